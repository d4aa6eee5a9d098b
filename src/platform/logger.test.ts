import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger } from './logger.ts';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString());
      callback();
    },
  });
  return { logger: createLogger('info', stream), text: () => lines.join('') };
}

describe('logger', () => {
  it('redacts credentials in headers and named fields up to two levels deep', () => {
    const { logger, text } = capture();
    logger.info({
      req: { headers: { authorization: 'Bearer bwk_leak1', cookie: 'sid=leak2' } },
      password: 'leak3',
      body: { token: 'leak4', nested: { secret: 'leak5' } },
      apiKey: 'leak6',
    });
    assert.doesNotMatch(text(), /leak\d/);
    assert.match(text(), /\[redacted\]/);
  });

  it("logs a request's path with its ids but not the tenant's names (collections, secrets, roles)", () => {
    const { logger, text } = capture();
    logger.info({
      req: {
        method: 'PUT',
        url: '/v1/tenants/0123456789ab/secrets/payroll-db?cursor=private-cursor',
        routeOptions: { url: '/v1/tenants/:tenantId/secrets/:secretName' },
        params: { tenantId: '0123456789ab', secretName: 'payroll-db' },
      },
    });
    const line = JSON.parse(text()) as { req: { path: string } };
    assert.equal(line.req.path, '/v1/tenants/0123456789ab/secrets/:secretName');
    assert.doesNotMatch(text(), /payroll|private-cursor/);
  });

  it('logs errors without driver detail that can quote row values', () => {
    const { logger, text } = capture();
    const driverError = Object.assign(new Error('duplicate key value violates unique constraint "records_pkey"'), {
      code: '23505',
      constraint: 'records_pkey',
      detail: 'Key (tenant_id, id)=(abc, private-value) already exists.',
      where: 'private-where',
    });
    logger.error({ err: driverError }, 'failed');
    const line = JSON.parse(text()) as { err: Record<string, unknown> };
    assert.equal(line.err['code'], '23505');
    assert.equal(line.err['constraint'], 'records_pkey');
    assert.doesNotMatch(text(), /private-value|private-where/);
  });
});
