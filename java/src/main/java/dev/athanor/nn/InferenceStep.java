package dev.athanor.nn;

import dev.athanor.memory.Tier;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Scope;
import dev.athanor.tensor.Tensor;

/**
 * One cached forward: n new tokens per sequence at positions [pos, pos + n). The new keys and values are
 * written straight into the cache by the projection GEMMs (the cache slice is the GEMM's output view), the
 * queries attend to all pos + n cached positions (causal, bottom-right aligned), and only the last
 * position of each sequence goes through the output head. Rows = B*n; shapes as in {@link Transformer}.
 */
final class InferenceStep {
  private InferenceStep() {}

  /** Buffers of one step shape (B sequences x n new tokens), reused by every step of that shape. */
  static final class Buffers implements AutoCloseable {
    private final java.util.List<Tensor> owned = new java.util.ArrayList<>();
    final int b, n;
    final Tensor ids, posIds, x, tmp, n1, q, att, f1, f2, f3, stats, stats2, n13, qh, q4, atth, lastRows, logits;
    final Tensor logitsHost;  // CUDA: a pinned (B, V) staging buffer, so a step's logits reach the host in one DMA

    Buffers(ModelConfig c, Device dev, DType dt, int b, int n) {
      this.b = b;
      this.n = n;
      boolean gpt2 = c.family() == Family.GPT2;
      long rows = (long) b * n, C = c.hidden(), F = c.intermediate();
      int h = c.heads(), d = c.headDim();
      try {
        ids = own(Tensor.zeros(DType.I32, dev, rows));
        posIds = gpt2 ? own(Tensor.zeros(DType.I32, dev, rows)) : null;
        x = own(Tensor.empty(dt, dev, rows, C));                    // residual (N, C)
        tmp = own(Tensor.empty(dt, dev, rows, C));
        n1 = own(Tensor.empty(dt, dev, rows, C));
        q = own(Tensor.empty(dt, dev, rows, C));                    // (N, C) = (B, n, H, D)
        att = own(Tensor.empty(dt, dev, rows, C));
        f1 = own(Tensor.empty(dt, dev, rows, F));
        f2 = own(Tensor.empty(dt, dev, rows, F));
        f3 = gpt2 ? null : own(Tensor.empty(dt, dev, rows, F));
        stats = own(Tensor.empty(DType.F32, dev, rows));
        stats2 = own(Tensor.empty(DType.F32, dev, rows));
        n13 = own(n1.view(b, n, C));
        q4 = own(q.view(b, n, h, d));
        qh = own(q4.permute(0, 2, 1, 3));
        atth = own(own(att.view(b, n, h, d)).permute(0, 2, 1, 3));
        lastRows = own(n13.select(1, n - 1));                        // (B, C), row stride n*C
        logits = own(Tensor.empty(DType.F32, dev, b, c.vocabSize())); // (B, V) FP32
        logitsHost = dev.isCuda()
            ? own(Tensor.empty(DType.F32, Device.CPU, Tier.HOST_PINNED, b, c.vocabSize())) : null;
      } catch (RuntimeException e) {
        close();
        throw e;
      }
    }

    private Tensor own(Tensor t) {
      owned.add(t.detach());
      return t;
    }

    @Override
    public void close() {
      for (int i = owned.size() - 1; i >= 0; i--) owned.get(i).close();
      owned.clear();
    }
  }

  static float[] run(Transformer m, KvCache cache, int[] tokens, int b, int n, int pos) {
    ModelConfig c = m.config();
    Parameters p = m.params();
    DType dt = m.computeDtype();
    boolean gpt2 = c.family() == Family.GPT2;
    long rows = (long) b * n, C = c.hidden(), kvd = c.kvDim();
    int kv = c.kvHeads(), d = c.headDim(), cap = cache.capacity(), tk = pos + n;
    Buffers w = cache.buffers(n, () -> new Buffers(c, m.device(), dt, b, n));
    Tensor x = w.x, tmp = w.tmp, n1 = w.n1, q = w.q, att = w.att, f1 = w.f1, f2 = w.f2, f3 = w.f3;
    Tensor stats = w.stats, stats2 = w.stats2, n13 = w.n13, qh = w.qh, atth = w.atth;
    try (Scope _ = Scope.open()) {  // only the cache views below are per step
      w.ids.copyFrom(tokens);
      Ops.embedding(w.ids, p.w(c.embeddingName()), x);
      if (gpt2) {
        int[] posIds = new int[(int) rows];
        for (int i = 0; i < rows; i++) posIds[i] = pos + i % n;
        w.posIds.copyFrom(posIds);
        Ops.embedding(w.posIds, p.w("transformer.wpe.weight"), tmp);
        Ops.add(x, tmp, x);
      }
      for (int l = 0; l < c.layers(); l++) {
        String pre = c.blockPrefix(l);
        Tensor kc = cache.keys(l), vc = cache.values(l);
        // the new rows of the cache as (B, n, KVD) GEMM outputs, and everything cached as (B, KV, pos+n, D)
        Tensor kNew = Tensor.wrap(kc.storage(), dt, new long[] {b, n, kvd}, new long[] {cap * kvd, kvd, 1}, pos * kvd);
        Tensor vNew = Tensor.wrap(vc.storage(), dt, new long[] {b, n, kvd}, new long[] {cap * kvd, kvd, 1}, pos * kvd);
        Tensor kAll = Tensor.wrap(kc.storage(), dt, new long[] {b, kv, tk, d}, new long[] {cap * kvd, d, kvd, 1}, 0);
        Tensor vAll = Tensor.wrap(vc.storage(), dt, new long[] {b, kv, tk, d}, new long[] {cap * kvd, d, kvd, 1}, 0);
        if (gpt2) {
          Ops.layerNorm(x, p.w(pre + "ln_1.weight"), p.w(pre + "ln_1.bias"), c.normEps(), n1, stats, stats2);
          Tensor wa = p.w(pre + "attn.c_attn.weight"), ba = p.w(pre + "attn.c_attn.bias");  // (C, 3C), (3C)
          Ops.gemm(n1, false, wa.slice(1, 0, C), false, 1f, 0f, ba.slice(0, 0, C), q);
          Ops.gemm(n13, false, wa.slice(1, C, 2 * C), false, 1f, 0f, ba.slice(0, C, 2 * C), kNew);
          Ops.gemm(n13, false, wa.slice(1, 2 * C, 3 * C), false, 1f, 0f, ba.slice(0, 2 * C, 3 * C), vNew);
          Ops.attention(qh, kAll, vAll, atth, null, true, m.attentionScale());
          Ops.gemm(att, false, p.w(pre + "attn.c_proj.weight"), false, 1f, 0f, p.w(pre + "attn.c_proj.bias"), tmp);
          Ops.add(x, tmp, x);
          Ops.layerNorm(x, p.w(pre + "ln_2.weight"), p.w(pre + "ln_2.bias"), c.normEps(), n1, stats, stats2);
          Ops.gemm(n1, false, p.w(pre + "mlp.c_fc.weight"), false, 1f, 0f, p.w(pre + "mlp.c_fc.bias"), f1);
          Ops.gelu(f1, f2);
          Ops.gemm(f2, false, p.w(pre + "mlp.c_proj.weight"), false, 1f, 0f, p.w(pre + "mlp.c_proj.bias"), tmp);
          Ops.add(x, tmp, x);
        } else {
          Ops.rmsNorm(x, p.w(pre + "input_layernorm.weight"), c.normEps(), n1, stats);
          Ops.gemm(n1, false, p.w(pre + "self_attn.q_proj.weight"), true, 1f, 0f, null, q);
          Ops.gemm(n13, false, p.w(pre + "self_attn.k_proj.weight"), true, 1f, 0f, null, kNew);
          Ops.gemm(n13, false, p.w(pre + "self_attn.v_proj.weight"), true, 1f, 0f, null, vNew);
          Tensor q4 = w.q4;
          Tensor k4 = Tensor.wrap(kc.storage(), dt, new long[] {b, n, kv, d}, new long[] {cap * kvd, kvd, d, 1}, pos * kvd);
          Ops.rope(q4, q4, pos, c.ropeTheta(), false);
          Ops.rope(k4, k4, pos, c.ropeTheta(), false);
          Ops.attention(qh, kAll, vAll, atth, null, true, m.attentionScale());
          Ops.gemm(att, false, p.w(pre + "self_attn.o_proj.weight"), true, 1f, 0f, null, tmp);
          Ops.add(x, tmp, x);
          Ops.rmsNorm(x, p.w(pre + "post_attention_layernorm.weight"), c.normEps(), n1, stats);
          Ops.gemm(n1, false, p.w(pre + "mlp.gate_proj.weight"), true, 1f, 0f, null, f1);
          Ops.gemm(n1, false, p.w(pre + "mlp.up_proj.weight"), true, 1f, 0f, null, f2);
          Ops.swiglu(f1, f2, f3);
          Ops.gemm(f3, false, p.w(pre + "mlp.down_proj.weight"), true, 1f, 0f, null, tmp);
          Ops.add(x, tmp, x);
        }
      }
      if (gpt2) {
        Ops.layerNorm(x, p.w("transformer.ln_f.weight"), p.w("transformer.ln_f.bias"), c.normEps(), n1, stats, stats2);
      } else {
        Ops.rmsNorm(x, p.w("model.norm.weight"), c.normEps(), n1, stats);
      }
      Ops.gemm(w.lastRows, false, p.w(m.headName()), true, 1f, 0f, null, w.logits);  // (B, V) = x_last @ W^T
      cache.advance(n);
      if (w.logitsHost == null) return w.logits.toFloatArray();
      w.logitsHost.copyFrom(w.logits);  // device -> pinned host, no allocation per step
      return w.logitsHost.toFloatArray();
    }
  }
}
