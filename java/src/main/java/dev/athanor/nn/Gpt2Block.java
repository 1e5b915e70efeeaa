package dev.athanor.nn;

import dev.athanor.ops.GemmEpilogue;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.tensor.Tensor;

/**
 * A GPT-2 block: x2 = x + c_proj(attention(c_attn(ln_1(x)))), out = x2 + mlp.c_proj(gelu(c_fc(ln_2(x2)))). Linear
 * weights in Hugging Face's Conv1D layout (in, out), every linear layer with a bias; q, k, v interleaved per row in
 * one (N, 3C) buffer as {@code c_attn} produces them.
 */
final class Gpt2Block extends Block {
  private final Norm ln1, ln2;
  // local shapes under tensor parallelism (tp = 1: the whole tensors); c_attn holds this rank's heads' q, k and v
  private final Weight attn, attnBias, attnProj, attnProjBias;  // (C, 3C/tp), (3C/tp), (C/tp, C), (C)
  private final Weight fc, fcBias, proj, projBias;              // (C, F/tp), (F/tp), (F/tp, C), (C)

  Gpt2Block(ModelConfig cfg, int index, ParameterStore s, TensorParallel tp, TensorParallel.AllReduce sum) {
    super(cfg, index, s, tp, sum);
    ln1 = Norm.of(cfg, Weight.of(s, name("ln_1.weight")), Weight.of(s, name("ln_1.bias")));
    ln2 = Norm.of(cfg, Weight.of(s, name("ln_2.weight")), Weight.of(s, name("ln_2.bias")));
    attn = Weight.of(s, name("attn.c_attn.weight"));
    attnBias = Weight.of(s, name("attn.c_attn.bias"));
    attnProj = Weight.of(s, name("attn.c_proj.weight"));
    attnProjBias = Weight.of(s, name("attn.c_proj.bias"));
    fc = Weight.of(s, name("mlp.c_fc.weight"));
    fcBias = Weight.of(s, name("mlp.c_fc.bias"));
    proj = Weight.of(s, name("mlp.c_proj.weight"));
    projBias = Weight.of(s, name("mlp.c_proj.bias"));
  }

  @Override
  void forward(Tensor x, BlockActs a, Tensor out, Tensor tmp, KvCache cache) {
    ln1.forward(x, a.n1, a.mean1, a.rstd1);
    Ops.gemm(allRows(a, a.n1), false, attn.w(), false, 1f, 0f, attnBias.w(), a.heads.qkv());   // (N, 3C/tp)
    attend(a, cache);
    rowParallel(a.att, attnProj, false, attnProjBias, tmp, a);                                // (N, C)
    Ops.add(x, tmp, a.x2);
    ln2.forward(a.x2, a.n2, a.mean2, a.rstd2);
    // gelu = GELU(fc), fc = n2 @ Wf + bf kept for the backward: one GEMM with the GELU epilogue where it is fused
    if (fusedEpilogues(a.fc)) {
      Ops.gemm(allRows(a, a.n2), false, fc.w(), false, 1f, 0f, fcBias.w(), a.gelu, GemmEpilogue.GELU, a.fc);  // (N, F/tp)
    } else {
      Ops.gemm(allRows(a, a.n2), false, fc.w(), false, 1f, 0f, fcBias.w(), a.fc);               // (N, F/tp)
      Ops.gelu(a.fc, a.gelu);
    }
    rowParallel(a.gelu, proj, false, projBias, tmp, a);                                       // (N, C)
    Ops.add(a.x2, tmp, out);
  }

  @Override
  void backward(Tensor x, BlockActs a, Workspace w) {
    Tensor dout = w.dres;
    // MLP: out = x2 + gelu(fc) @ Wp + bp
    Tensor dAll = allRows(a, dout);                                       // sequence parallel: gathered
    Ops.gemm(a.gelu, true, dAll, false, 1f, 1f, null, proj.g());          // (F/tp, C)
    Ops.sumRows(dAll, projBias.g());                                      // replicated: same dout on every rank
    // dF2 = (dout @ Wp^T) * gelu'(fc): one GEMM with the GELU backward epilogue where it is fused
    if (fusedEpilogues(a.fc)) {
      Ops.gemm(dAll, false, proj.w(), true, 1f, 0f, null, w.dF2, GemmEpilogue.GELU_BACKWARD, a.fc);  // (N, F/tp)
    } else {
      Ops.gemm(dAll, false, proj.w(), true, 1f, 0f, null, w.dF1);           // (N, F/tp)
      Ops.geluBackward(a.fc, w.dF1, w.dF2);
    }
    Ops.gemm(allRows(a, a.n2), true, w.dF2, false, 1f, 1f, null, fc.g()); // (C, F/tp)
    Ops.sumRows(w.dF2, fcBias.g());
    Tensor d1 = inputGradientRows(a, w.d1);
    Ops.gemm(w.dF2, false, fc.w(), true, 1f, 0f, null, d1);               // (N, C), this rank's part
    columnParallelInputGradient(a, d1, w.d1);
    normBackward(ln2, a, w.d1, a.x2, a.mean2, a.rstd2, w.d2);
    Ops.add(w.d2, dout, w.d2);                                            // d(x2)
    // attention: x2 = x + att @ Wo + bo
    dAll = allRows(a, w.d2);
    Ops.gemm(a.att, true, dAll, false, 1f, 1f, null, attnProj.g());       // (C/tp, C)
    Ops.sumRows(dAll, attnProjBias.g());
    Ops.gemm(dAll, false, attnProj.w(), true, 1f, 0f, null, w.dAtt);      // (N, C/tp)
    attendBackward(a, w);
    Ops.gemm(allRows(a, a.n1), true, w.dHeads.qkv(), false, 1f, 1f, null, attn.g());  // (C, 3C/tp)
    Ops.sumRows(w.dHeads.qkv(), attnBias.g());
    d1 = inputGradientRows(a, w.d1);
    Ops.gemm(w.dHeads.qkv(), false, attn.w(), true, 1f, 0f, null, d1);   // (N, C), this rank's part
    columnParallelInputGradient(a, d1, w.d1);
    normBackward(ln1, a, w.d1, x, a.mean1, a.rstd1, dout);
    Ops.add(dout, w.d2, dout);
  }

  /**
   * Whether the MLP uses the GEMM's fused GELU epilogues for tensors on {@code t}'s device: always on the CPU (bit for
   * bit the separate GEMM and GELU), on CUDA only under {@code ATHANOR_CUDA_HOPPER=1} until a GPU check has run the
   * fused CUDA epilogues; otherwise the separate GEMM and GELU kernels the GPU checks verified.
   */
  private static boolean fusedEpilogues(Tensor t) {
    return t.device().isCpu() || dev.athanor.runtime.HopperSwitch.on();
  }
}
