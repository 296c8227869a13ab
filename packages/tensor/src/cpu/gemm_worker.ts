// The second thread of the CPU gemm (see gemm_pool.ts): waits on a shared control word, takes one job
// from its message port synchronously, computes its row range into the shared f64 output and signals
// done. It never returns to its event loop, so jobs cost no message-loop round trip.

import { parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { gemmRows } from './gemm.js';
import { CTRL, type GemmJob } from './gemm_pool.js';

const { ctrl: ctrlBuf, port } = workerData as { ctrl: SharedArrayBuffer; port: MessagePort };
const ctrl = new Int32Array(ctrlBuf);
void parentPort;
Atomics.store(ctrl, CTRL.ready, 1);
Atomics.notify(ctrl, CTRL.ready);
let seen = 0;
for (;;) {
  Atomics.wait(ctrl, CTRL.seq, seen);
  const seq = Atomics.load(ctrl, CTRL.seq);
  let msg = receiveMessageOnPort(port);
  // postMessage enqueues before the sequence number is bumped; retry briefly in case delivery lags.
  for (let tries = 0; !msg && tries < 1000; tries++) {
    Atomics.wait(ctrl, CTRL.ready, 1, 1);
    msg = receiveMessageOnPort(port);
  }
  let status = 1;
  if (msg) {
    try {
      const j = msg.message as GemmJob;
      gemmRows(new Float32Array(j.A), j.aOff, j.aStrides, new Float32Array(j.B), j.bOff, j.bStrides, j.M, j.N, j.K,
        new Float64Array(j.C), j.m0, j.m1);
    } catch {
      status = 2;
    }
  } else {
    status = 2;
  }
  Atomics.store(ctrl, CTRL.status, status);
  Atomics.store(ctrl, CTRL.done, seq);
  Atomics.notify(ctrl, CTRL.done);
  seen = seq;
}
