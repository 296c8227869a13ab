// The op-definition seam (@cnx/tensor op_definition.ts): an op defined OUTSIDE @cnx/tensor and the WebGPU
// backend (here, in this test file) runs on both backends from its own float64 reference and its own WGSL;
// a backend registered by name (a stub written here) runs a core op through the definitions' references;
// runOp checks backends, inputs and the shapes a backend returns; the statistics outputs of the
// normalisations and attention (what their backward needs) agree with independent float64 values.

import { backendNames, createBackend, gridFor, packUniforms, registerBackend, type GpuContext } from '@cnx/kernels';
import {
  DTYPE_BYTES, defineOp, expectF32, f32, formatShape, numel, ops, runOp1, Tensor,
  type Backend, type DType, type MemoryStats, type OpDefinition, type RawArray, type Shape, type Storage, type TensorMeta,
} from '@cnx/tensor';
import { describe, expect, it } from 'vitest';
import { expectAllClose, randomArray, tolFor } from '../../../test/harness/allclose.js';
import { describeEachBackend } from '../../../test/harness/backends.js';

/** A toy fused op: y = clamp(a * k + b, lo, hi), with its reference and WGSL kernel right here. */
interface ScaledAddClampParams { k: number; lo: number; hi: number }

function scaledAddClampWebgpu(ctx: GpuContext, a: Tensor, b: Tensor, p: ScaledAddClampParams): Tensor {
  const y = ctx.empty(a.shape);
  const n = a.size;
  const [gx, gy] = gridFor(Math.ceil(n / 64), ctx.limits.maxComputeWorkgroupsPerDimension);
  ctx.dispatch({
    label: 'test_scaled_add_clamp',
    code: /* wgsl */ `
struct U { n: u32, gx: u32, k: f32, lo: f32, hi: f32 }
@group(0) @binding(0) var<storage, read> A: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<uniform> u: U;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * u.gx + wid.x) * 64u + lid;
  if (i >= u.n) { return; }
  Y[i] = clamp(A[i] * u.k + B[i], u.lo, u.hi);
}`,
    bindings: [a, b, y],
    uniforms: packUniforms([['u32', n], ['u32', gx], ['f32', p.k], ['f32', p.lo], ['f32', p.hi]]),
    workgroups: [gx, gy],
  });
  return y;
}

const scaledAddClampOp = defineOp<ScaledAddClampParams>({
  name: 'test.scaled_add_clamp',
  outputs([a, b]) {
    expectF32('scaledAddClamp', [a, b]);
    if (formatShape(a!.shape) !== formatShape(b!.shape)) throw new Error(`scaledAddClamp: shapes differ: ${formatShape(a!.shape)}, ${formatShape(b!.shape)}`);
    return f32(a!.shape);
  },
  cpu([a, b], p) {
    const A = a!.data as Float32Array, B = b!.data as Float32Array;
    return [Float32Array.from(A, (v, i) => Math.min(p.hi, Math.max(p.lo, v * p.k + B[i]!)))];
  },
  kernels: { webgpu: (ctx: GpuContext, [a, b], p) => [scaledAddClampWebgpu(ctx, a!, b!, p)] },
});

describeEachBackend('an extension op defined in a test file', (test) => {
  test('runs its WGSL on WebGPU and its reference on the CPU, and they agree', async (backend) => {
    const cpu = await createBackend('cpu');
    const a = randomArray(1000, 1, 3), b = randomArray(1000, 2);
    const p = { k: 1.5, lo: -2, hi: 2.5 };
    const got = runOp1(scaledAddClampOp, [backend.fromRaw(a, [10, 100]), backend.fromRaw(b, [10, 100])], p);
    const ref = runOp1(scaledAddClampOp, [cpu.fromRaw(a, [10, 100]), cpu.fromRaw(b, [10, 100])], p);
    expect(got.shape).toEqual([10, 100]);
    const want = Float32Array.from(a, (v, i) => Math.min(2.5, Math.max(-2, v * 1.5 + b[i]!)));
    expectAllClose(await ref.data(), want, tolFor('f32'), 'reference');
    expectAllClose(await got.data(), want, tolFor('f32'), 'webgpu');
    // A strided input is made contiguous before the op sees it (inputLayout 'contiguous').
    const t = backend.fromRaw(a.slice(0, 100), [10, 10]).transpose(0, 1);
    const viaView = runOp1(scaledAddClampOp, [t, backend.fromRaw(new Float32Array(100), [10, 10])], { k: 1, lo: -9, hi: 9 });
    const tv = await t.data();
    expectAllClose(await viaView.data(), tv, tolFor('f32'), 'transposed input');
  });
}, ['webgpu']);

describeEachBackend('an op with no kernel for a backend', (test) => {
  test('runs on the CPU and names the op and the backend elsewhere', async (backend) => {
    const cpuOnly: OpDefinition<ScaledAddClampParams> = { ...scaledAddClampOp, name: 'test.cpu_only', kernels: undefined };
    const cpu = await createBackend('cpu');
    const p = { k: 1, lo: 0, hi: 1 };
    expect(runOp1(cpuOnly, [cpu.zeros([4]), cpu.zeros([4])], p).shape).toEqual([4]);
    expect(() => runOp1(cpuOnly, [backend.zeros([4]), backend.zeros([4])], p)).toThrow(/op 'test\.cpu_only' has no WebGPU kernel/);
  });
}, ['webgpu']);

describe('ops as definitions', () => {
  it('refuses inputs of two backends, and a backend result that contradicts the definition', async () => {
    const a = await createBackend('cpu'), b = await createBackend('cpu');
    const x = a.fromRaw(new Float32Array(4), [4]), y = b.fromRaw(new Float32Array(4), [4]);
    expect(() => ops.add(x, y)).toThrow(/different backends/);
    const liar = defineOp<Record<string, never>>({
      name: 'test.liar', outputs: ([v]) => f32(v!.shape), cpu: () => [new Float32Array(3)],
    });
    expect(() => runOp1(liar, [x], {})).toThrow(/test\.liar: the CPU reference returned 1 array\(s\) of 3 elements, the definition's outputs are \[4\]/);
  });

  it('the definition checks inputs before any work', async () => {
    const cpu = await createBackend('cpu');
    const x = cpu.fromRaw(new Float32Array(6), [2, 3]);
    expect(() => ops.conv2d(x, x, undefined)).toThrow(/conv2d: expected input \[N, C, H, W\] of rank 4, found \[2, 3\]/);
    expect(() => ops.groupNorm(cpu.fromRaw(new Float32Array(12), [1, 6, 2]), 4, undefined, undefined, 1e-5)).toThrow(/6 channels .* do not split into 4 groups/);
  });
});

describe('saved statistics (what backward needs)', () => {
  it('group norm: per-(sample, group) mean and rstd [N, G]', async () => {
    const cpu = await createBackend('cpu');
    const N = 2, C = 6, G = 3, S = 5, eps = 1e-5;
    const xv = randomArray(N * C * S, 7, 2, 0.5);
    const { y, mean, rstd } = ops.groupNormWithStats(cpu.fromRaw(xv, [N, C, S]), G, undefined, undefined, eps);
    expect(mean.shape).toEqual([N, G]);
    expect(rstd.shape).toEqual([N, G]);
    const m = await mean.data(), r = await rstd.data();
    for (let n = 0; n < N; n++) {
      for (let g = 0; g < G; g++) {
        const seg = Array.from(xv.subarray((n * C + g * 2) * S, (n * C + g * 2 + 2) * S));
        const mu = seg.reduce((s, v) => s + v, 0) / seg.length;
        const v = seg.reduce((s, x) => s + (x - mu) ** 2, 0) / seg.length;
        expect(m[n * G + g]).toBeCloseTo(mu, 6);
        expect(r[n * G + g]).toBeCloseTo(1 / Math.sqrt(v + eps), 4);
      }
    }
    expectAllClose(await y.data(), await ops.groupNorm(cpu.fromRaw(xv, [N, C, S]), G, undefined, undefined, eps).data(), tolFor('f32'), 'y unchanged');
  });

  it('layer norm: per-row mean and rstd', async () => {
    const cpu = await createBackend('cpu');
    const xv = randomArray(3 * 4 * 7, 8);
    const { mean, rstd } = ops.layerNormWithStats(cpu.fromRaw(xv, [3, 4, 7]), undefined, undefined, 1e-5);
    expect(mean.shape).toEqual([3, 4]);
    const m = await mean.data(), r = await rstd.data();
    const row = Array.from(xv.subarray(7 * 5, 7 * 6));
    const mu = row.reduce((s, v) => s + v, 0) / 7;
    expect(m[5]).toBeCloseTo(mu, 6);
    expect(r[5]).toBeCloseTo(1 / Math.sqrt(row.reduce((s, x) => s + (x - mu) ** 2, 0) / 7 + 1e-5), 4);
  });

  it('attention: the logsumexp of each row of scaled scores [B, Lq, H]', async () => {
    const cpu = await createBackend('cpu');
    const B = 1, Lq = 3, Lk = 5, H = 2, D = 4;
    const q = randomArray(B * Lq * H * D, 9), k = randomArray(B * Lk * H * D, 10), v = randomArray(B * Lk * H * D, 11);
    const { lse } = ops.attentionWithStats(cpu.fromRaw(q, [B, Lq, H * D]), cpu.fromRaw(k, [B, Lk, H * D]), cpu.fromRaw(v, [B, Lk, H * D]), H, { scale: 0.5 });
    expect(lse!.shape).toEqual([B, Lq, H]);
    const l = await lse!.data();
    for (let i = 0; i < Lq; i++) {
      for (let h = 0; h < H; h++) {
        let z = 0;
        for (let j = 0; j < Lk; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) dot += q[(i * H + h) * D + d]! * k[(j * H + h) * D + d]!;
          z += Math.exp(0.5 * dot);
        }
        expect(l[i * H + h]).toBeCloseTo(Math.log(z), 5);
      }
    }
  });
});

/**
 * A third backend in one file: host memory in plain arrays, every op through its definition's float64
 * reference. Registered by name from here; createBackend('stub') finds it.
 */
class StubBackend implements Backend {
  readonly name = 'stub';
  readonly description = 'a test stub: definitions\' references over plain arrays';
  ran: string[] = [];
  private data = new WeakMap<Storage, RawArray>();
  private tensor(raw: RawArray, shape: Shape, dtype: DType): Tensor {
    const storage: Storage = { refs: 0, byteLength: raw.length * DTYPE_BYTES[dtype] };
    this.data.set(storage, raw);
    return new Tensor(this, storage, dtype, shape);
  }
  zeros(shape: Shape, dtype: DType = 'f32'): Tensor { return this.tensor(new Float32Array(numel(shape)), shape, dtype); }
  fromRaw(raw: RawArray, shape: Shape, dtype: DType = 'f32'): Tensor { return this.tensor(raw.slice(), shape, dtype); }
  private values(x: Tensor): Float32Array {
    const raw = this.data.get(x.storage) as Float32Array;
    const out = new Float32Array(x.size);
    const idx = new Array<number>(x.rank).fill(0);
    for (let i = 0; i < x.size; i++) {
      let off = x.offset;
      idx.forEach((v, d) => { off += v * x.strides[d]!; });
      out[i] = raw[off]!;
      for (let d = x.rank - 1; d >= 0 && ++idx[d]! === x.shape[d]; d--) idx[d] = 0;
    }
    return out;
  }
  async read(x: Tensor): Promise<Float32Array> { return this.values(x); }
  free(storage: Storage): void { this.data.delete(storage); }
  memory(): MemoryStats { return { liveBytes: 0, peakBytes: 0, pooledBytes: 0 }; }
  resetPeak(): void {}
  async sync(): Promise<void> {}
  destroy(): void {}
  contiguous(x: Tensor): Tensor { return this.tensor(this.values(x), x.shape, x.dtype); }
  cast(x: Tensor, dtype: DType): Tensor {
    if (dtype !== 'f32') throw new Error('stub: f32 only');
    return this.contiguous(x);
  }
  run<P>(op: OpDefinition<P>, inputs: readonly (Tensor | undefined)[], params: P, outputs: readonly TensorMeta[]): Tensor[] {
    this.ran.push(op.name);
    const host = inputs.map((x) => x && { shape: x.shape, dtype: x.dtype, data: this.values(x) });
    return op.cpu(host, params).map((d, i) => this.tensor(d, outputs[i]!.shape, outputs[i]!.dtype));
  }
}

describe('backends by name', () => {
  it('a stub backend registered by name runs an op', async () => {
    const stub = new StubBackend();
    const unregister = registerBackend('stub', () => stub);
    try {
      expect(backendNames()).toEqual(expect.arrayContaining(['cpu', 'webgpu', 'stub']));
      const be = await createBackend('stub');
      expect(be.name).toBe('stub');
      const a = be.fromRaw(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]);
      const b = be.fromRaw(Float32Array.of(1, 0, 0, 1, 1, 1), [3, 2]);
      const c = ops.matmul(a, b);
      expect(Array.from(await c.data())).toEqual([4, 5, 10, 11]);
      expect(stub.ran).toEqual(['matmul']);
    } finally {
      unregister();
    }
    await expect(createBackend('stub')).rejects.toThrow(/unknown backend 'stub'; expected one of cpu, wasm, webgpu/);
  });

  it('refuses to shadow a built-in backend or a bad name', () => {
    expect(() => registerBackend('cpu', () => new StubBackend())).toThrow(/built-in/);
    expect(() => registerBackend('../x', () => new StubBackend())).toThrow(/lower-case name/);
  });
});

describeEachBackend('saved statistics on every backend', (test) => {
  test('group norm, layer norm and attention statistics agree with the reference', async (backend) => {
    const cpu = await createBackend('cpu');
    const xv = randomArray(2 * 8 * 37, 12, 2, 3);
    const both = (be: Backend) => ({
      gn: ops.groupNormWithStats(be.fromRaw(xv, [2, 8, 37]), 4, undefined, undefined, 1e-5, true),
      ln: ops.layerNormWithStats(be.fromRaw(xv, [2, 8, 37]), undefined, undefined, 1e-5),
      at: ops.attentionWithStats(be.fromRaw(xv.subarray(0, 2 * 37 * 4), [2, 37, 4]), be.fromRaw(xv.subarray(100, 100 + 2 * 37 * 4), [2, 37, 4]),
        be.fromRaw(xv.subarray(200, 200 + 2 * 37 * 4), [2, 37, 4]), 2),
    });
    const g = both(backend), r = both(cpu);
    for (const k of ['y', 'mean', 'rstd'] as const) {
      expect(g.gn[k].shape).toEqual(r.gn[k].shape);
      expectAllClose(await g.gn[k].data(), await r.gn[k].data(), tolFor('f32', 74, 4), `group norm ${k}`);
      expect(g.ln[k].shape).toEqual(r.ln[k].shape);
      expectAllClose(await g.ln[k].data(), await r.ln[k].data(), tolFor('f32', 37, 4), `layer norm ${k}`);
    }
    expect(g.at.lse!.shape).toEqual([2, 37, 2]);
    expectAllClose(await g.at.lse!.data(), await r.at.lse!.data(), tolFor('f32', 37, 8), 'attention lse');
    expectAllClose(await g.at.out.data(), await r.at.out.data(), tolFor('f32', 37, 4), 'attention out');
  });
});
