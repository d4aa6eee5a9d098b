/**
 * The control of the noisy-neighbour bench: a bare HTTP server in its own process that answers every
 * request with a 429 problem document of Bulwark's size. Aiming the flood here instead of at Bulwark shows
 * what the flood costs B through the machine alone (the load generator and a second busy process on the
 * same cores), so the rest of B's move is what Bulwark's refusals cost.
 */
import { createServer } from 'node:http';

const body = JSON.stringify({
  type: 'urn:bulwark:error:rate_limited',
  title: 'Too many requests.',
  status: 429,
  code: 'rate_limited',
  detail: 'Rate limit "requests" exceeded: 100 per 1 s. Retry after 1 s.',
  instance: '/v1/tenants/000000000000/collections/notes/records/000000000000',
  requestId: '000000000000',
});
const server = createServer((request, response) => {
  request.resume();
  response.writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': '1', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
  response.end(body);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  process.send?.({ port: typeof address === 'object' && address !== null ? address.port : 0 });
});
process.on('disconnect', () => server.close());
