package dev.athanor.nn;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.tensor.Tensor;

/**
 * A Llama block: x2 = x + o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1))) with
 * n1 = input_layernorm(x), out = x2 + down_proj(silu(gate_proj(n2)) * up_proj(n2)) with
 * n2 = post_attention_layernorm(x2). Linear weights in nn.Linear's (out, in) layout, no biases, grouped-query
 * attention with KV key/value heads; RoPE at positions starting at the cache length (0 in training).
 */
final class LlamaBlock extends Block {
  private final Norm norm1, norm2;
  // local shapes under tensor parallelism (tp = 1: the whole tensors): this rank's query and key/value heads
  private final Weight q, k, v, o;         // (C/tp, C), (KVD/tp, C), (KVD/tp, C), (C, C/tp)
  private final Weight gate, up, down;     // (F/tp, C), (F/tp, C), (C, F/tp)

  LlamaBlock(ModelConfig cfg, int index, ParameterStore s, TensorParallel tp, TensorParallel.AllReduce sum) {
    super(cfg, index, s, tp, sum);
    norm1 = Norm.of(cfg, Weight.of(s, name("input_layernorm.weight")), Weight.NONE);
    norm2 = Norm.of(cfg, Weight.of(s, name("post_attention_layernorm.weight")), Weight.NONE);
    q = Weight.of(s, name("self_attn.q_proj.weight"));
    k = Weight.of(s, name("self_attn.k_proj.weight"));
    v = Weight.of(s, name("self_attn.v_proj.weight"));
    o = Weight.of(s, name("self_attn.o_proj.weight"));
    gate = Weight.of(s, name("mlp.gate_proj.weight"));
    up = Weight.of(s, name("mlp.up_proj.weight"));
    down = Weight.of(s, name("mlp.down_proj.weight"));
  }

  @Override
  void forward(Tensor x, BlockActs a, Tensor out, Tensor tmp, KvCache cache) {
    float theta = cfg.ropeTheta();
    long pos = cache == null ? 0 : cache.length();
    norm1.forward(x, a.n1, null, a.rstd1);
    Tensor n1 = allRows(a, a.n1);                                            // sequence parallel: gathered
    Ops.gemm(n1, false, q.w(), true, 1f, 0f, null, a.heads.q());             // (N, C/tp)
    Ops.gemm(n1, false, k.w(), true, 1f, 0f, null, a.heads.k());             // (N, KVD/tp)
    Ops.gemm(n1, false, v.w(), true, 1f, 0f, null, a.heads.v());             // (N, KVD/tp)
    Ops.rope(a.heads.q4(), a.heads.q4(), pos, theta, false);
    Ops.rope(a.heads.k4(), a.heads.k4(), pos, theta, false);
    attend(a, cache);
    rowParallel(a.att, o, true, Weight.NONE, tmp, a);                        // (N, C)
    Ops.add(x, tmp, a.x2);
    norm2.forward(a.x2, a.n2, null, a.rstd2);
    Tensor n2 = allRows(a, a.n2);
    Ops.gemm(n2, false, gate.w(), true, 1f, 0f, null, a.gate);               // (N, F/tp)
    Ops.gemm(n2, false, up.w(), true, 1f, 0f, null, a.up);                   // (N, F/tp)
    Ops.swiglu(a.gate, a.up, a.act);
    rowParallel(a.act, down, true, Weight.NONE, tmp, a);                     // (N, C)
    Ops.add(a.x2, tmp, out);
  }

  @Override
  void backward(Tensor x, BlockActs a, Workspace w) {
    float theta = cfg.ropeTheta();
    Tensor dout = w.dres;
    // MLP: out = x2 + swiglu(n2 Wg^T, n2 Wu^T) Wd^T
    Tensor dAll = allRows(a, dout);                                          // sequence parallel: gathered
    Ops.gemm(dAll, true, a.act, false, 1f, 1f, null, down.g());              // (C, F/tp)
    Ops.gemm(dAll, false, down.w(), false, 1f, 0f, null, w.dF1);             // (N, F/tp)
    Ops.swigluBackward(a.gate, a.up, w.dF1, w.dF2, w.dF3);
    Tensor n2 = allRows(a, a.n2);
    Ops.gemm(w.dF2, true, n2, false, 1f, 1f, null, gate.g());                // (F/tp, C)
    Ops.gemm(w.dF3, true, n2, false, 1f, 1f, null, up.g());
    Tensor d1 = inputGradientRows(a, w.d1);
    Ops.gemm(w.dF2, false, gate.w(), false, 1f, 0f, null, d1);               // (N, C), this rank's part
    Ops.gemm(w.dF3, false, up.w(), false, 1f, 1f, null, d1);
    columnParallelInputGradient(a, d1, w.d1);
    normBackward(norm2, a, w.d1, a.x2, null, a.rstd2, w.d2);
    Ops.add(w.d2, dout, w.d2);                                               // d(x2)
    // attention: x2 = x + att Wo^T
    dAll = allRows(a, w.d2);
    Ops.gemm(dAll, true, a.att, false, 1f, 1f, null, o.g());                 // (C, C/tp)
    Ops.gemm(dAll, false, o.w(), false, 1f, 0f, null, w.dAtt);               // (N, C/tp)
    attendBackward(a, w);
    Ops.rope(w.dHeads.q4(), w.dHeads.q4(), 0, theta, true);
    Ops.rope(w.dHeads.k4(), w.dHeads.k4(), 0, theta, true);
    Tensor n1 = allRows(a, a.n1);
    Ops.gemm(w.dHeads.q(), true, n1, false, 1f, 1f, null, q.g());
    Ops.gemm(w.dHeads.k(), true, n1, false, 1f, 1f, null, k.g());
    Ops.gemm(w.dHeads.v(), true, n1, false, 1f, 1f, null, v.g());
    d1 = inputGradientRows(a, w.d1);
    Ops.gemm(w.dHeads.q(), false, q.w(), false, 1f, 0f, null, d1);
    Ops.gemm(w.dHeads.k(), false, k.w(), false, 1f, 1f, null, d1);
    Ops.gemm(w.dHeads.v(), false, v.w(), false, 1f, 1f, null, d1);          // (N, C), this rank's part
    columnParallelInputGradient(a, d1, w.d1);
    normBackward(norm1, a, w.d1, x, null, a.rstd1, dout);
    Ops.add(dout, w.d2, dout);
  }
}
