/**
 * The noisy tenant's flood, in a worker thread of the bench process, so the quiet tenant's paced reads on
 * the main thread never wait behind the flood's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { paced, type PacedTarget } from './paced.ts';

export interface FloodOrder extends PacedTarget {
  requestsPerSecond: number;
  seconds: number;
}

const order = workerData as FloodOrder;
parentPort?.postMessage(await paced(order, order.requestsPerSecond, order.seconds, 64));
