import { createSocket, type Socket } from 'node:dgram';

/**
 * A DNS server for tests, on a free loopback UDP port, that answers TXT queries from a map (and NXDOMAIN
 * for anything else): domain verification runs through Node's real resolver against it. Hand-written
 * because it needs one record type and no dependency does less; it is never used outside tests.
 */
export interface TestDnsServer {
  /** `127.0.0.1:<port>`, for BULWARK_DNS_SERVERS. */
  address: string;
  setTxt(name: string, values: string[]): void;
  close(): Promise<void>;
}

function readName(message: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let at = offset;
  for (;;) {
    const length = message[at] ?? 0;
    if (length === 0) return { name: labels.join('.').toLowerCase(), end: at + 1 };
    labels.push(message.subarray(at + 1, at + 1 + length).toString('ascii'));
    at += 1 + length;
  }
}

function answer(query: Buffer, records: ReadonlyMap<string, string[]>): Buffer {
  const { name, end } = readName(query, 12);
  const type = query.readUInt16BE(end);
  const question = query.subarray(12, end + 4);
  const values = type === 16 ? records.get(name) : undefined;
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2);
  // QR, RD and RA set; RCODE 3 (NXDOMAIN) when there is nothing to answer.
  header.writeUInt16BE(values === undefined ? 0x8183 : 0x8180, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(values === undefined ? 0 : values.length, 6);
  const answers = (values ?? []).map((value) => {
    const text = Buffer.from(value, 'utf8');
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(16, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(text.length + 1, 10);
    return Buffer.concat([rr, Buffer.from([text.length]), text]);
  });
  return Buffer.concat([header, question, ...answers]);
}

export async function startTestDnsServer(): Promise<TestDnsServer> {
  const records = new Map<string, string[]>();
  const socket: Socket = createSocket('udp4');
  socket.on('message', (query, peer) => {
    try {
      socket.send(answer(query, records), peer.port, peer.address);
    } catch {
      // A malformed query gets no answer, as from a real server under garbage.
    }
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    setTxt: (name, values) => records.set(name.toLowerCase(), values),
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
