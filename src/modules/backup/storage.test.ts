import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { loadConfig } from '../../platform/config/config.ts';
import { startTestS3Server, type TestS3Server } from '../../testing/s3-server.ts';
import { backupStoresOf, type ObjectStore, openObjectStore } from './storage.ts';

function credentialsOf(server: TestS3Server) {
  return { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey };
}

/** Rejection of a promise, as the Error it rejected with. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, String(error));
    return error;
  }
  assert.fail('it succeeded');
}

async function putAll(store: ObjectStore, keys: readonly string[]): Promise<void> {
  for (let at = 0; at < keys.length; at += 50) {
    await Promise.all(keys.slice(at, at + 50).map((key) => store.put(key, Buffer.from(key))));
  }
}

const escapes = ['', '../x', 'a/../../x', '/x', 'a//b', 'a/', '.', 'a/./b', '..', 'a\\b', 'a b', 'a%2fb', 'ü', 'a\0b', 'a'.repeat(513), `${'a'.repeat(256)}/b`];

interface Subject {
  name: string;
  open(): Promise<{ store: ObjectStore; close: () => Promise<void> }>;
}

const subjects: Subject[] = [
  {
    name: 'local folder',
    open: async () => {
      const folder = await mkdtemp(join(tmpdir(), 'bulwark-store-'));
      return { store: openObjectStore(pathToFileURL(join(folder, 'backups')).href), close: () => rm(folder, { recursive: true, force: true }) };
    },
  },
  {
    name: 'S3 (in-test server, real S3Client)',
    open: async () => {
      const server = await startTestS3Server();
      return { store: openObjectStore(server.target('region-a/backups'), { s3: { credentials: credentialsOf(server) } }), close: () => server.close() };
    },
  },
];

for (const subject of subjects) {
  describe(`object store contract: ${subject.name}`, () => {
    let store: ObjectStore;
    let close: () => Promise<void>;
    before(async () => ({ store, close } = await subject.open()));
    after(() => close());

    it('gives back exactly the bytes it was given, and an overwrite replaces them', async () => {
      const binary = Buffer.concat([Buffer.from([0, 255, 0x80, 0x0a, 0x0d]), randomBytes(200_000)]);
      await store.put('roundtrip/a.bin', binary);
      assert.deepEqual(await store.get('roundtrip/a.bin'), binary);
      await store.put('roundtrip/a.bin', Buffer.from('second'));
      assert.deepEqual(await store.get('roundtrip/a.bin'), Buffer.from('second'));
      await store.put('roundtrip/empty', Buffer.alloc(0));
      assert.deepEqual(await store.get('roundtrip/empty'), Buffer.alloc(0));
    });

    it('answers undefined for a key that was never written, also below another key', async () => {
      assert.equal(await store.get('missing/manifest.json'), undefined);
      await store.put('missing-parent', Buffer.from('x'));
      assert.equal(await store.get('missing-parent/child'), undefined);
      assert.equal(await store.get('missing'), undefined);
    });

    it('a reader during overwrites sees the old or the whole new object, never a mix', async () => {
      const [first, second] = [Buffer.alloc(1 << 20, 1), Buffer.alloc(1 << 20, 2)];
      await store.put('atomic/object', first);
      await Promise.all([
        (async () => {
          for (let round = 0; round < 10; round += 1) await store.put('atomic/object', round % 2 === 0 ? second : first);
        })(),
        (async () => {
          for (let round = 0; round < 20; round += 1) {
            const body = await store.get('atomic/object');
            assert.ok(body !== undefined && (body.equals(first) || body.equals(second)), 'a torn read');
          }
        })(),
      ]);
    });

    it('lists every key under a prefix, sorted, past 1000 keys, and nothing outside the prefix', async () => {
      const keys = Array.from({ length: 1003 }, (_, index) => `many/${String(index).padStart(4, '0')}`);
      await putAll(store, [...keys].reverse());
      await putAll(store, ['many-sibling', 'manyfold/x', 'many/nested/deeper/z', 'other/many/0000']);
      assert.deepEqual(await store.list('many/'), [...keys, 'many/nested/deeper/z'].sort());
      assert.deepEqual(await store.list('many/100'), ['many/1000', 'many/1001', 'many/1002']);
      assert.deepEqual(await store.list('many'), [...keys, 'many-sibling', 'many/nested/deeper/z', 'manyfold/x'].sort());
      assert.deepEqual(await store.list('nothing/'), []);
      const all = await store.list('');
      assert.ok(all.includes('other/many/0000') && all.includes('many/0000'));
      assert.deepEqual(all, [...all].sort());
    });

    it('delete answers true for an object it removed, then false, and the key is gone', async () => {
      await store.put('deleted/one/object', Buffer.from('x'));
      await store.put('deleted/kept', Buffer.from('y'));
      assert.equal(await store.delete('deleted/one/object'), true);
      assert.equal(await store.delete('deleted/one/object'), false);
      assert.equal(await store.get('deleted/one/object'), undefined);
      assert.deepEqual(await store.list('deleted/'), ['deleted/kept']);
      assert.equal(await store.delete('deleted/never'), false);
      // A key that is only a prefix of other keys is not an object.
      assert.equal(await store.delete('deleted'), false);
      assert.equal(await store.delete('deleted/kep'), false);
      assert.deepEqual(await store.get('deleted/kept'), Buffer.from('y'));
    });

    it('refuses keys that could escape the folder or prefix, on every operation, before touching storage', async () => {
      for (const key of escapes) {
        for (const attempt of [() => store.put(key, Buffer.from('x')), () => store.get(key), () => store.delete(key)]) {
          const error = await rejection(attempt());
          assert.match(error.message, /is not a valid object key/, JSON.stringify(key));
          assert.ok(error.message.startsWith(store.location));
        }
      }
      for (const prefix of ['../', '/', '/x', 'a//', 'a//b', '..', 'x/../']) {
        assert.match((await rejection(store.list(prefix))).message, /is not a valid object key prefix/, prefix);
      }
      assert.deepEqual(await store.list('escaped'), []);
    });
  });
}

describe('local folder store', () => {
  let folder: string;
  before(async () => (folder = await mkdtemp(join(tmpdir(), 'bulwark-local-'))));
  after(() => rm(folder, { recursive: true, force: true }));

  it('creates its folders 0700 and its files 0600, and leaves no temp files', async () => {
    const root = join(folder, 'private', 'backups');
    const store = openObjectStore(pathToFileURL(root).href);
    assert.equal(store.location, pathToFileURL(root).href);
    await store.put('backups/abc/manifest.json', Buffer.from('{}'));
    for (const path of [join(folder, 'private'), root, join(root, 'backups'), join(root, 'backups', 'abc')]) {
      assert.equal((await stat(path)).mode & 0o777, 0o700, path);
    }
    assert.equal((await stat(join(root, 'backups', 'abc', 'manifest.json'))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(join(root, 'backups', 'abc')), ['manifest.json']);
  });

  it('does not list leftovers of an interrupted put or foreign files, and lists an absent folder as empty', async () => {
    const root = join(folder, 'leftovers');
    const store = openObjectStore(pathToFileURL(root).href);
    assert.deepEqual(await store.list(''), []);
    await store.put('a/b', Buffer.from('x'));
    await writeFile(join(root, 'a', '~0123456789abcdef.partial'), 'half');
    await writeFile(join(root, 'a', 'with space'), 'foreign');
    assert.deepEqual(await store.list(''), ['a/b']);
  });

  it('removes the folders a delete empties, up to but not including its root', async () => {
    const root = join(folder, 'pruned');
    const store = openObjectStore(pathToFileURL(root).href);
    await store.put('backups/0123456789ab/tenants/abcdef012345.seg', Buffer.from('x'));
    await store.put('backups/0123456789ab/manifest.json', Buffer.from('x'));
    assert.equal(await store.delete('backups/0123456789ab/tenants/abcdef012345.seg'), true);
    assert.deepEqual(await readdir(join(root, 'backups', '0123456789ab')), ['manifest.json']);
    assert.equal(await store.delete('backups/0123456789ab/manifest.json'), true);
    assert.deepEqual(await readdir(root), []);
    await store.put('backups/again', Buffer.from('y'));
    assert.deepEqual(await store.get('backups/again'), Buffer.from('y'));
  });

  it('names the location and the key when the file system refuses', async () => {
    const root = join(folder, 'blocked');
    const store = openObjectStore(pathToFileURL(root).href);
    await store.put('file', Buffer.from('x'));
    // `file` is a file, so nothing can live below it.
    const error = await rejection(store.put('file/below', Buffer.from('y')));
    assert.equal(error.message, `${store.location}: put file/below failed (EEXIST)`);
  });
});

describe('S3 object store', () => {
  let server: TestS3Server;
  before(async () => (server = await startTestS3Server({ maxKeys: 7 })));
  after(() => server.close());

  it('keeps objects under its prefix, pages through ListObjectsV2 continuation, and describes itself without endpoint or credentials', async () => {
    const store = openObjectStore(server.target('eu/backups'), { s3: { credentials: credentialsOf(server) } });
    const neighbour = openObjectStore(server.target('eu/backups-old'), { s3: { credentials: credentialsOf(server) } });
    assert.equal(store.location, 's3://bulwark-test/eu/backups');
    assert.equal(openObjectStore(`s3://${server.bucket}?region=eu-west-1`).location, 's3://bulwark-test');
    const keys = Array.from({ length: 30 }, (_, index) => `b/${String(index).padStart(2, '0')}`);
    await putAll(store, keys);
    await neighbour.put('b/00', Buffer.from('not mine'));
    assert.deepEqual([...server.objects().keys()].filter((key) => !key.startsWith('eu/backups/')), ['eu/backups-old/b/00']);
    const before = server.operations.filter((operation) => operation === 'ListObjectsV2').length;
    assert.deepEqual(await store.list('b/'), keys);
    assert.equal(server.operations.filter((operation) => operation === 'ListObjectsV2').length - before, 5);
    assert.deepEqual(await store.get('b/00'), Buffer.from('b/00'));
  });

  it('fails with the location and key, never the secret, when the secret is wrong', async () => {
    const wrongSecret = `${server.secretAccessKey.slice(0, -4)}AAAA`;
    const store = openObjectStore(server.target('wrong'), { s3: { credentials: { accessKeyId: server.accessKeyId, secretAccessKey: wrongSecret } } });
    for (const attempt of [() => store.put('k', Buffer.from('x')), () => store.get('k'), () => store.list(''), () => store.delete('k')]) {
      const error = await rejection(attempt());
      assert.match(error.message, /^s3:\/\/bulwark-test\/wrong: (put k|get k|list|delete k) failed \(SignatureDoesNotMatch\)$/);
      const everything = inspect(error, { depth: 20, showHidden: true });
      assert.ok(!everything.includes(wrongSecret) && !everything.includes(server.secretAccessKey), 'the secret leaked into the error');
    }
    assert.ok(![...server.objects().keys()].some((key) => key.startsWith('wrong/')));
  });

  it('treats a missing bucket or an unknown access key as a failure, not as a missing object', async () => {
    const noBucket = openObjectStore(`s3://no-such-bucket?${new URLSearchParams({ endpoint: server.url, region: server.region, forcePathStyle: 'true' }).toString()}`, {
      s3: { credentials: credentialsOf(server) },
    });
    assert.match((await rejection(noBucket.get('k'))).message, /^s3:\/\/no-such-bucket: get k failed \(NoSuchBucket\)$/);
    assert.match((await rejection(noBucket.delete('k'))).message, /\(NoSuchBucket\)$/);
    const stranger = openObjectStore(server.target(), { s3: { credentials: { accessKeyId: 'AKIAUNKNOWN', secretAccessKey: server.secretAccessKey } } });
    assert.match((await rejection(stranger.get('k'))).message, /\(InvalidAccessKeyId\)$/);
  });

  it('the test server checks the signature over path and body, and accepts a signed UNSIGNED-PAYLOAD', async () => {
    const client = () => new S3Client({ endpoint: server.url, region: server.region, forcePathStyle: true, credentials: credentialsOf(server) });
    type Request = { path: string; body: unknown; headers: Record<string, string> };
    type Args = { input: object; request: unknown };
    const mutate = (s3: S3Client, change: (request: Request) => void, relation: 'before' | 'after') =>
      s3.middlewareStack.addRelativeTo(
        <T>(next: (args: Args) => Promise<T>) =>
          async (args: Args): Promise<T> => {
            change(args.request as Request);
            return next(args);
          },
        { relation, toMiddleware: 'httpSigningMiddleware' },
      );

    // After signing: another key, or another body of the same length.
    const otherPath = client();
    mutate(otherPath, (request) => (request.path = request.path.replace('/signed', '/forged')), 'after');
    const forged = await rejection(otherPath.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'signed', Body: Buffer.from('data') })));
    assert.equal(forged.name, 'SignatureDoesNotMatch');
    const otherBody = client();
    mutate(otherBody, (request) => (request.body = Buffer.from('evil')), 'after');
    assert.equal((await rejection(otherBody.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'signed', Body: Buffer.from('data') })))).name, 'XAmzContentSHA256Mismatch');
    assert.equal(server.objects().has('signed') || server.objects().has('forged'), false);

    // Before signing: the SDK signs the literal UNSIGNED-PAYLOAD instead of the body's hash.
    const unsigned = client();
    mutate(unsigned, (request) => (request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD'), 'before');
    await unsigned.send(new PutObjectCommand({ Bucket: server.bucket, Key: 'unsigned', Body: Buffer.from('body') }));
    assert.deepEqual(server.objects().get('unsigned'), Buffer.from('body'));
    const fetched = await client().send(new GetObjectCommand({ Bucket: server.bucket, Key: 'unsigned', ChecksumMode: 'ENABLED' }));
    assert.equal(await fetched.Body?.transformToString(), 'body');

    const anonymous = await fetch(`${server.url}/${server.bucket}/unsigned`);
    assert.equal(anonymous.status, 403);
    assert.match(await anonymous.text(), /<Code>AccessDenied<\/Code>/);
  });
});

describe('openObjectStore', () => {
  it('takes absolute file:// folders and s3:// buckets with a prefix and known options only', () => {
    assert.equal(openObjectStore('file:///var/lib/bulwark/backups/').location, 'file:///var/lib/bulwark/backups');
    assert.equal(openObjectStore('s3://my-bucket/a/b/?region=eu-west-1&forcePathStyle=false').location, 's3://my-bucket/a/b');
    for (const url of [
      'http://example.com/x',
      'file:///tmp/x?mode=0777',
      'file://remote-host/x',
      's3://my-bucket/x?secretAccessKey=abc',
      's3://user:pass@my-bucket/x',
      's3://my-bucket:9000/x',
      's3://x/y',
      's3://My_Bucket/y',
      's3://my-bucket/a%2Fb',
      's3://my-bucket/y?endpoint=ftp://127.0.0.1',
      's3://my-bucket/y?forcePathStyle=yes',
      'not a url',
    ]) {
      assert.throws(() => openObjectStore(url), Error, url);
    }
    let refused: unknown;
    try {
      openObjectStore('s3://user:hunter2@my-bucket/x');
    } catch (error) {
      refused = error;
    }
    assert.ok(refused instanceof Error && !refused.message.includes('hunter2'));
  });
});

describe('backupStoresOf', () => {
  it('gives every region a folder of its own under the data folder by default', () => {
    const stores = backupStoresOf({ regions: ['eu', 'us-east'], dataDir: './data', backupTargets: undefined });
    assert.deepEqual([...stores.keys()], ['eu', 'us-east']);
    assert.equal(stores.get('eu')?.location, pathToFileURL(resolve('data', 'backups', 'eu')).href);
    assert.equal(stores.get('us-east')?.location, pathToFileURL(resolve('data', 'backups', 'us-east')).href);
  });

  it('opens the configured target of each region, as the configuration parses it', async () => {
    const server = await startTestS3Server();
    try {
      const config = loadConfig({}, { env: 'test', regions: 'eu,us', dataDir: '/tmp/unused', backupTargets: `eu=file:///srv/backups/eu,us=${server.target('us')}` });
      const stores = backupStoresOf(config, { s3: { credentials: credentialsOf(server) } });
      assert.equal(stores.get('eu')?.location, 'file:///srv/backups/eu');
      assert.equal(stores.get('us')?.location, 's3://bulwark-test/us');
      await stores.get('us')?.put('backups/x/manifest.json', Buffer.from('{}'));
      assert.deepEqual([...server.objects().keys()], ['us/backups/x/manifest.json']);
    } finally {
      await server.close();
    }
  });

  it('refuses a region without a target instead of sending its backups elsewhere', () => {
    assert.throws(() => backupStoresOf({ regions: ['eu', 'us'], dataDir: '/data', backupTargets: { eu: 'file:///srv/eu' } }), /no target for region us/);
  });
});
