import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';

/**
 * An S3-compatible server for tests, on a free loopback port, path-style (`/<bucket>/<key>`), objects in
 * memory. No S3 server is installable on this machine, and the backup store uses five calls (PutObject,
 * GetObject, HeadObject, DeleteObject, ListObjectsV2), so this implements exactly those against the real
 * `@aws-sdk/client-s3`. Every request must carry a valid AWS Signature V4 for the one configured key,
 * recomputed here from the canonical request, so a client that signs wrongly (or not at all) fails as it
 * would against S3. Anything else answers 501 NotImplemented rather than something plausible.
 */
export interface TestS3Server {
  /** The endpoint, `http://127.0.0.1:<port>`. */
  url: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** An `s3://` backup target for this server's bucket under `prefix`. */
  target(prefix?: string): string;
  /** Every stored object (full key → body copy), sorted by key. */
  objects(): Map<string, Buffer>;
  /** The S3 operation of every request that passed the signature check, in order (`ListObjectsV2`, ...). */
  operations: string[];
  close(): Promise<void>;
}

export interface TestS3ServerOptions {
  bucket?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Largest ListObjectsV2 page (S3: 1000); small values exercise pagination cheaply. */
  maxKeys?: number;
}

interface StoredObject {
  body: Buffer;
  etag: string;
  lastModified: Date;
}

class S3Error extends Error {
  readonly status: number;
  readonly code: string;

  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const maxBodyBytes = 64 * 1024 * 1024;
const maxClockSkewMs = 15 * 60 * 1000;

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** AWS's URI encoding: every byte but the unreserved `A-Za-z0-9-_.~` percent-encoded, uppercase hex. */
function awsEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`);
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new S3Error(400, 'InvalidURI', 'Couldn\'t parse the specified URI.');
  }
}

function xmlEscape(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

function parseQuery(raw: string): [string, string][] {
  return raw === ''
    ? []
    : raw.split('&').map((pair) => {
        const at = pair.indexOf('=');
        return at === -1 ? [decode(pair), ''] : [decode(pair.slice(0, at)), decode(pair.slice(at + 1))];
      });
}

function header(request: IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** SigV4 (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html), header form only. */
function verifySignature(request: IncomingMessage, rawPath: string, query: [string, string][], body: Buffer, options: Required<TestS3ServerOptions>): void {
  const authorization = header(request, 'authorization');
  if (authorization === undefined) throw new S3Error(403, 'AccessDenied', 'Access Denied');
  const match = /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/s3\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/.exec(authorization);
  if (!match) throw new S3Error(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed.');
  const [, accessKeyId = '', day = '', region = '', signedHeaderList = '', signature = ''] = match;
  if (accessKeyId !== options.accessKeyId) throw new S3Error(403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.');
  if (region !== options.region) throw new S3Error(400, 'AuthorizationHeaderMalformed', `The authorization header is malformed; the region '${region}' is wrong; expecting '${options.region}'`);

  const amzDate = header(request, 'x-amz-date') ?? '';
  const time = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!time || !amzDate.startsWith(day)) throw new S3Error(403, 'AccessDenied', 'AWS authentication requires a valid Date or x-amz-date header');
  const [, year, month, date, hour, minute, second] = time.map(Number);
  if (Math.abs(Date.UTC(year ?? 0, (month ?? 1) - 1, date, hour, minute, second) - Date.now()) > maxClockSkewMs) {
    throw new S3Error(403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.');
  }

  const signedHeaders = signedHeaderList.split(';');
  if (!['host', 'x-amz-date', 'x-amz-content-sha256'].every((name) => signedHeaders.includes(name))) {
    throw new S3Error(403, 'AccessDenied', 'host, x-amz-date and x-amz-content-sha256 must be signed');
  }
  const payloadHash = header(request, 'x-amz-content-sha256') ?? '';
  if (payloadHash.startsWith('STREAMING-')) throw new S3Error(501, 'NotImplemented', 'This test server does not implement streaming (aws-chunked) uploads.');
  if (payloadHash !== 'UNSIGNED-PAYLOAD') {
    if (!/^[0-9a-f]{64}$/.test(payloadHash)) throw new S3Error(400, 'InvalidArgument', 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD or a SHA-256 hex digest');
    if (payloadHash !== sha256Hex(body)) throw new S3Error(400, 'XAmzContentSHA256Mismatch', 'The provided \'x-amz-content-sha256\' header does not match what was computed.');
  }

  const canonicalHeaders = signedHeaders.map((name) => `${name}:${(header(request, name) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const canonicalQuery = query
    .map(([name, value]) => [awsEncode(name), awsEncode(value)] as const)
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join('&');
  const canonicalPath = rawPath.split('/').map((segment) => awsEncode(decode(segment))).join('/');
  const canonicalRequest = [request.method ?? '', canonicalPath, canonicalQuery, canonicalHeaders, signedHeaderList, payloadHash].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${options.secretAccessKey}`, day), region), 's3'), 'aws4_request');
  const expected = hmac(signingKey, stringToSign);
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
    throw new S3Error(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided. Check your key and signing method.');
  }
}

function crc32Base64(body: Buffer): string {
  const digest = Buffer.alloc(4);
  digest.writeUInt32BE(crc32(body));
  return digest.toString('base64');
}

function xml(response: ServerResponse, status: number, document: string): void {
  response.writeHead(status, { 'content-type': 'application/xml' });
  response.end(`<?xml version="1.0" encoding="UTF-8"?>\n${document}`);
}

function readBody(request: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBodyBytes) request.destroy(new Error('body too large'));
      else chunks.push(chunk);
    });
    request.on('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

export async function startTestS3Server(options: TestS3ServerOptions = {}): Promise<TestS3Server> {
  const settings: Required<TestS3ServerOptions> = {
    bucket: options.bucket ?? 'bulwark-test',
    region: options.region ?? 'eu-west-1',
    accessKeyId: options.accessKeyId ?? `AKIA${randomBytes(8).toString('hex').toUpperCase()}`,
    // Hex, so a test can search for the secret in text (or in a RegExp) literally.
    secretAccessKey: options.secretAccessKey ?? randomBytes(20).toString('hex'),
    maxKeys: options.maxKeys ?? 1000,
  };
  const store = new Map<string, StoredObject>();
  const operations: string[] = [];

  function listObjectsV2(params: Map<string, string>, response: ServerResponse): void {
    const prefix = params.get('prefix') ?? '';
    const requested = params.has('max-keys') ? Number(params.get('max-keys')) : settings.maxKeys;
    if (!Number.isInteger(requested) || requested < 0) throw new S3Error(400, 'InvalidArgument', 'Provided max-keys not an integer or within integer range');
    const token = params.get('continuation-token');
    const after = token === undefined ? undefined : Buffer.from(token, 'base64url').toString('utf8');
    if (token !== undefined && (after === '' || Buffer.from(after ?? '', 'utf8').toString('base64url') !== token)) {
      throw new S3Error(400, 'InvalidArgument', 'The continuation token provided is incorrect');
    }
    const matching = [...store.keys()].filter((key) => key.startsWith(prefix) && (after === undefined || key > after)).sort();
    const page = matching.slice(0, Math.min(requested, settings.maxKeys));
    const truncated = matching.length > page.length;
    const last = page.at(-1);
    const contents = page.map((key) => {
      const object = store.get(key);
      return object === undefined
        ? ''
        : `<Contents><Key>${xmlEscape(key)}</Key><LastModified>${object.lastModified.toISOString()}</LastModified><ETag>${xmlEscape(object.etag)}</ETag><Size>${object.body.length}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
    });
    xml(
      response,
      200,
      `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${xmlEscape(settings.bucket)}</Name><Prefix>${xmlEscape(prefix)}</Prefix>` +
        (token === undefined ? '' : `<ContinuationToken>${xmlEscape(token)}</ContinuationToken>`) +
        (truncated && last !== undefined ? `<NextContinuationToken>${Buffer.from(last, 'utf8').toString('base64url')}</NextContinuationToken>` : '') +
        `<KeyCount>${page.length}</KeyCount><MaxKeys>${requested}</MaxKeys><IsTruncated>${truncated}</IsTruncated>${contents.join('')}</ListBucketResult>`,
    );
  }

  function objectHeaders(object: StoredObject, request: IncomingMessage): Record<string, string> {
    return {
      'content-type': 'application/octet-stream',
      'content-length': String(object.body.length),
      etag: object.etag,
      'last-modified': object.lastModified.toUTCString(),
      // With checksum mode on, the SDK validates the body against this, as it would with S3.
      ...(header(request, 'x-amz-checksum-mode') === 'ENABLED' ? { 'x-amz-checksum-crc32': crc32Base64(object.body) } : {}),
    };
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const body = await readBody(request);
    const target = request.url ?? '/';
    const queryAt = target.indexOf('?');
    const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
    const query = parseQuery(queryAt === -1 ? '' : target.slice(queryAt + 1));
    verifySignature(request, rawPath, query, body, settings);

    const [, bucket = '', ...keyParts] = rawPath.split('/');
    if (decode(bucket) !== settings.bucket) throw new S3Error(404, 'NoSuchBucket', 'The specified bucket does not exist');
    const key = decode(keyParts.join('/'));
    const params = new Map(query);
    const method = request.method ?? '';

    if (key === '') {
      const known = ['list-type', 'prefix', 'max-keys', 'continuation-token'];
      if (method !== 'GET' || params.get('list-type') !== '2' || query.some(([name]) => !known.includes(name))) {
        throw new S3Error(501, 'NotImplemented', 'This test server implements ListObjectsV2 only (prefix, max-keys, continuation-token).');
      }
      operations.push('ListObjectsV2');
      listObjectsV2(params, response);
      return;
    }
    if (query.some(([name]) => name !== 'x-id')) throw new S3Error(501, 'NotImplemented', 'This test server implements plain object calls only.');

    const object = store.get(key);
    switch (method) {
      case 'PUT': {
        operations.push('PutObject');
        const checksum = header(request, 'x-amz-checksum-crc32');
        if (checksum !== undefined && checksum !== crc32Base64(body)) throw new S3Error(400, 'BadDigest', 'The CRC32 you specified did not match the calculated checksum.');
        const etag = `"${createHash('md5').update(body).digest('hex')}"`;
        store.set(key, { body, etag, lastModified: new Date() });
        response.writeHead(200, { etag, ...(checksum === undefined ? {} : { 'x-amz-checksum-crc32': checksum }) });
        response.end();
        return;
      }
      case 'GET':
        operations.push('GetObject');
        if (object === undefined) throw new S3Error(404, 'NoSuchKey', 'The specified key does not exist.');
        response.writeHead(200, objectHeaders(object, request));
        response.end(object.body);
        return;
      case 'HEAD':
        operations.push('HeadObject');
        if (object === undefined) throw new S3Error(404, 'NotFound', 'Not Found');
        response.writeHead(200, objectHeaders(object, request));
        response.end();
        return;
      case 'DELETE':
        operations.push('DeleteObject');
        store.delete(key);
        response.writeHead(204);
        response.end();
        return;
      default:
        throw new S3Error(405, 'MethodNotAllowed', 'The specified method is not allowed against this resource.');
    }
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      const failure = error instanceof S3Error ? error : new S3Error(500, 'InternalError', 'We encountered an internal error. Please try again.');
      if (response.headersSent) {
        response.destroy();
      } else if (request.method === 'HEAD') {
        // HEAD answers carry no body: S3 sends the status alone.
        response.writeHead(failure.status);
        response.end();
      } else {
        xml(response, failure.status, `<Error><Code>${failure.code}</Code><Message>${xmlEscape(failure.message)}</Message><RequestId>${randomBytes(8).toString('hex').toUpperCase()}</RequestId></Error>`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    bucket: settings.bucket,
    region: settings.region,
    accessKeyId: settings.accessKeyId,
    secretAccessKey: settings.secretAccessKey,
    target: (prefix = '') => `s3://${settings.bucket}${prefix === '' ? '' : `/${prefix}`}?${new URLSearchParams({ endpoint: url, region: settings.region, forcePathStyle: 'true' }).toString()}`,
    objects: () => new Map([...store.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, object]) => [key, Buffer.from(object.body)])),
    operations,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        server.closeAllConnections();
      }),
  };
}
