package dev.athanor.nn;

import dev.athanor.nn.Workspace.BlockActs;
import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A decoder-only transformer of the GPT-2 or Llama family on one device, with an explicit forward and
 * backward per block (llm.c style): every activation a block's backward needs is a named buffer of
 * {@link Workspace}, so lifetimes are known before a step runs.
 *
 * <p>Training: {@link #forward(int[], int[], int, int)} returns the mean loss over the targets that are
 * {@code >= 0} and keeps the activations; {@link #backward(float)} then accumulates parameter gradients
 * into {@link Parameters#grads()}. On the CPU everything is FP32; on CUDA weights are used in BF16 (copies
 * of the FP32 masters), activations are BF16, and gradients of parameters, norms' statistics and the loss
 * are FP32. Inference: {@link #newCache(int, int)} and {@link #forwardCached(KvCache, int[], int, int)}.
 *
 * <p>Not thread-safe: one step at a time.
 */
public final class Transformer implements AutoCloseable {
  private final ModelConfig cfg;
  private final Device device;
  private final DType dt;
  private final Parameters params;
  private final float scale;
  private boolean recompute;
  private Workspace ws;
  private int validTargets = -1;  // of the last forward; -1 when there is none to backpropagate

  /**
   * A model with all-zero parameters on {@code device}, computing in {@code computeDtype}: F32, BF16 or F16 on
   * either backend (BF16 on the CPU rounds at the same points as on CUDA, which lets the GPU's tolerances be
   * checked without a GPU; it is not faster there).
   */
  public Transformer(ModelConfig config, Device device, DType computeDtype) {
    this.cfg = Objects.requireNonNull(config, "config");
    this.device = Objects.requireNonNull(device, "device");
    this.dt = Objects.requireNonNull(computeDtype, "computeDtype");
    if (dt == DType.I32) throw new IllegalArgumentException("compute dtype must be floating, got " + dt);
    if (device.isCuda() && !List.of(32, 64, 96, 128).contains(config.headDim())) {
      throw new IllegalArgumentException("CUDA attention supports head dims 32, 64, 96 and 128; this model has "
          + config.headDim() + " (hidden " + config.hidden() + " / heads " + config.heads() + ")");
    }
    this.params = new Parameters(config.parameterSpecs(), device, dt);
    this.scale = (float) (1.0 / Math.sqrt(config.headDim()));
  }

  /** A model on {@code device} in its default compute dtype: F32 on the CPU, BF16 on CUDA. */
  public static Transformer create(ModelConfig config, Device device) {
    return new Transformer(config, device, device.isCuda() ? DType.BF16 : DType.F32);
  }

  public ModelConfig config() {
    return cfg;
  }

  public Device device() {
    return device;
  }

  public DType computeDtype() {
    return dt;
  }

  public Parameters parameters() {
    return params;
  }

  /**
   * Recompute each block's activations during the backward instead of keeping them from the forward:
   * activation memory drops from L blocks to one (plus the L+1 residual streams) for one more forward.
   */
  public void setRecompute(boolean on) {
    if (on != recompute) {
      recompute = on;
      releaseWorkspace();
    }
  }

  public boolean recompute() {
    return recompute;
  }

  // ------------------------------------------------------------------ weights

  /**
   * Seeded initialization: weights and embeddings from N(0, 0.02), the residual projections (GPT-2's
   * {@code c_proj}, Llama's {@code o_proj} and {@code down_proj}) from N(0, 0.02 / sqrt(2 layers)), biases
   * 0, norm weights 1. Each tensor draws from its own range of the counter-based stream, so the result
   * does not depend on the device's thread count.
   */
  public void initialize(long seed) {
    double resStd = 0.02 / Math.sqrt(2.0 * cfg.layers());
    long offset = 0;
    for (Parameters.Param p : params.list()) {
      String name = p.name();
      if (p.spec().shape().length >= 2) {
        boolean residual = name.endsWith("c_proj.weight") || name.endsWith("o_proj.weight")
            || name.endsWith("down_proj.weight");
        Ops.randNormal(p.master(), seed, offset, 0f, (float) (residual ? resStd : 0.02));
      } else {
        Ops.fill(p.master(), name.endsWith(".bias") ? 0f : 1f);
      }
      offset += 2 * p.spec().numel();
    }
    params.syncCompute();
    params.zeroGrad();
  }

  /**
   * Copies weights into the model: every parameter must be present, with its exact shape, in any
   * floating dtype, on any device (e.g. host tensors from a safetensors file).
   */
  public void loadWeights(Map<String, Tensor> weights) {
    for (Parameters.Param p : params.list()) {
      Tensor src = weights.get(p.name());
      if (src == null) throw new IllegalArgumentException("missing weight \"" + p.name() + "\"");
      if (!java.util.Arrays.equals(src.shape(), p.spec().shape())) {
        throw new IllegalArgumentException("weight \"" + p.name() + "\" has shape " + java.util.Arrays.toString(src.shape())
            + ", expected " + java.util.Arrays.toString(p.spec().shape()));
      }
      if (!src.dtype().isFloating()) throw new IllegalArgumentException("weight \"" + p.name() + "\" is " + src.dtype());
      try (Tensor onDevice = src.device().equals(device) ? null : src.to(device)) {
        Tensor s = onDevice == null ? src : onDevice;
        if (s.dtype() == DType.F32) {
          p.master().copyFrom(s);
        } else {
          Ops.convert(s.contiguous(), p.master());
        }
      }
    }
    params.syncCompute();
  }

  /** The FP32 master weights by Hugging Face name (owned by the model: do not close them). */
  public Map<String, Tensor> weights() {
    return params.masters();
  }

  // ------------------------------------------------------------------ training forward / backward

  /**
   * Forward pass over {@code inputs} (B x T token ids, row-major) computing the mean cross-entropy
   * against {@code targets} (B x T; a negative target is ignored). Keeps the activations for
   * {@link #backward(float)}. Returns 0 when every target is ignored.
   */
  public float forward(int[] inputs, int[] targets, int batch, int seq) {
    checkTokens("inputs", inputs, batch, seq, false);
    checkTokens("targets", targets, batch, seq, true);
    Workspace w = workspace(batch, seq);
    w.ids.copyFrom(inputs);
    w.targets.copyFrom(targets);
    int valid = 0;
    for (int t : targets) if (t >= 0) valid++;
    runForward(w);
    Ops.crossEntropy(w.logits, w.targets, w.losses, w.lse);
    validTargets = valid;
    if (valid == 0) return 0f;
    float[] l = w.losses.toFloatArray();
    double sum = 0;
    for (int i = 0; i < l.length; i++) if (targets[i] >= 0) sum += l[i];
    return (float) (sum / valid);
  }

  /**
   * Backward pass of the last {@link #forward}: accumulates {@code gradScale * d(mean loss)/d(param)}
   * into the parameter gradients (use {@code 1 / accumulationSteps} for gradient accumulation).
   */
  public void backward(float gradScale) {
    if (validTargets < 0 || ws == null) throw new IllegalStateException("backward() needs a forward() first");
    Workspace w = ws;
    int valid = validTargets;
    validTargets = -1;
    if (valid == 0) return;
    Ops.fill(w.dlosses, gradScale / valid);
    // logits -> dlogits in place
    Ops.crossEntropyBackward(w.logits, w.targets, w.lse, w.dlosses, w.logits);
    Parameters.Param head = params.get(headName());
    Ops.gemm(w.logits, true, w.normOut, false, 1f, 1f, null, head.grad());          // (V, C) += dlogits^T @ x
    Ops.gemm(w.logits, false, head.compute(), false, 1f, 0f, null, w.d1);           // (N, C) = dlogits @ W
    Tensor last = w.residual[cfg.layers()];
    if (cfg.family() == Family.GPT2) {
      Ops.layerNormBackward(w.d1, last, params.w("transformer.ln_f.weight"), w.normMean, w.normRstd, w.dres,
          params.g("transformer.ln_f.weight"), params.g("transformer.ln_f.bias"));
    } else {
      Ops.rmsNormBackward(w.d1, last, params.w("model.norm.weight"), w.normRstd, w.dres, params.g("model.norm.weight"));
    }
    for (int l = cfg.layers() - 1; l >= 0; l--) {
      BlockActs a = w.acts(l);
      if (recompute) blockForward(l, w.residual[l], a, w.scratch, w.batch, w.seq, w.scratch);
      if (cfg.family() == Family.GPT2) {
        gpt2BlockBackward(l, w.residual[l], a, w);
      } else {
        llamaBlockBackward(l, w.residual[l], a, w);
      }
    }
    Ops.embeddingBackward(w.ids, w.dres, params.g(cfg.embeddingName()));
    if (cfg.family() == Family.GPT2) Ops.embeddingBackward(w.positions, w.dres, params.g("transformer.wpe.weight"));
  }

  /** Per-token losses of the last forward, (B x T) row-major: {@code -log p(target)} (0 where ignored). */
  public float[] tokenLosses() {
    if (ws == null) throw new IllegalStateException("no forward has run");
    return ws.losses.toFloatArray();
  }

  /** Logits of the last forward as a host array (B x T x V, row-major). */
  public float[] lastLogits() {
    if (ws == null) throw new IllegalStateException("no forward has run");
    if (validTargets < 0) {
      // after backward the buffer holds gradients
      throw new IllegalStateException("the logits buffer was overwritten by backward(); call forward() again");
    }
    try (Tensor c = ws.logits.contiguous(); Tensor f = c.dtype() == DType.F32 ? null : Ops.convert(c, DType.F32)) {
      return (f == null ? c : f).toFloatArray();
    }
  }

  private void runForward(Workspace w) {
    Tensor x0 = w.residual[0];
    Ops.embedding(w.ids, params.w(cfg.embeddingName()), x0);
    if (cfg.family() == Family.GPT2) {
      Ops.embedding(w.positions, params.w("transformer.wpe.weight"), w.scratch);
      Ops.add(x0, w.scratch, x0);
    }
    for (int l = 0; l < cfg.layers(); l++) {
      blockForward(l, w.residual[l], w.acts(l), w.residual[l + 1], w.batch, w.seq, w.scratch);
    }
    Tensor last = w.residual[cfg.layers()];
    if (cfg.family() == Family.GPT2) {
      Ops.layerNorm(last, params.w("transformer.ln_f.weight"), params.w("transformer.ln_f.bias"), cfg.normEps(),
          w.normOut, w.normMean, w.normRstd);
    } else {
      Ops.rmsNorm(last, params.w("model.norm.weight"), cfg.normEps(), w.normOut, w.normRstd);
    }
    Ops.gemm(w.normOut, false, params.w(headName()), true, 1f, 0f, null, w.logits);  // (N, V) = x @ W^T
  }

  /** Name of the output head's weight: the token embedding when tied. */
  String headName() {
    return cfg.tiedEmbeddings() ? cfg.embeddingName() : "lm_head.weight";
  }

  // ------------------------------------------------------------------ blocks

  /** Block l: x (N, C) -> out (N, C), saving its activations in a. tmp (N, C) is scratch. */
  private void blockForward(int l, Tensor x, BlockActs a, Tensor out, int b, int t, Tensor tmp) {
    String p = cfg.blockPrefix(l);
    float eps = cfg.normEps();
    if (cfg.family() == Family.GPT2) {
      Ops.layerNorm(x, params.w(p + "ln_1.weight"), params.w(p + "ln_1.bias"), eps, a.n1, a.mean1, a.rstd1);
      Ops.gemm(a.n1, false, params.w(p + "attn.c_attn.weight"), false, 1f, 0f, params.w(p + "attn.c_attn.bias"), a.heads.qkv());
      Ops.attention(a.heads.qh(), a.heads.kh(), a.heads.vh(), a.atth, a.lse, true, scale);
      Ops.gemm(a.att, false, params.w(p + "attn.c_proj.weight"), false, 1f, 0f, params.w(p + "attn.c_proj.bias"), tmp);
      Ops.add(x, tmp, a.x2);
      Ops.layerNorm(a.x2, params.w(p + "ln_2.weight"), params.w(p + "ln_2.bias"), eps, a.n2, a.mean2, a.rstd2);
      Ops.gemm(a.n2, false, params.w(p + "mlp.c_fc.weight"), false, 1f, 0f, params.w(p + "mlp.c_fc.bias"), a.fc);
      Ops.gelu(a.fc, a.gelu);
      Ops.gemm(a.gelu, false, params.w(p + "mlp.c_proj.weight"), false, 1f, 0f, params.w(p + "mlp.c_proj.bias"), tmp);
      Ops.add(a.x2, tmp, out);
    } else {
      Ops.rmsNorm(x, params.w(p + "input_layernorm.weight"), eps, a.n1, a.rstd1);
      Ops.gemm(a.n1, false, params.w(p + "self_attn.q_proj.weight"), true, 1f, 0f, null, a.heads.q());
      Ops.gemm(a.n1, false, params.w(p + "self_attn.k_proj.weight"), true, 1f, 0f, null, a.heads.k());
      Ops.gemm(a.n1, false, params.w(p + "self_attn.v_proj.weight"), true, 1f, 0f, null, a.heads.v());
      Ops.rope(a.heads.q4(), a.heads.q4(), 0, cfg.ropeTheta(), false);
      Ops.rope(a.heads.k4(), a.heads.k4(), 0, cfg.ropeTheta(), false);
      Ops.attention(a.heads.qh(), a.heads.kh(), a.heads.vh(), a.atth, a.lse, true, scale);
      Ops.gemm(a.att, false, params.w(p + "self_attn.o_proj.weight"), true, 1f, 0f, null, tmp);
      Ops.add(x, tmp, a.x2);
      Ops.rmsNorm(a.x2, params.w(p + "post_attention_layernorm.weight"), eps, a.n2, a.rstd2);
      Ops.gemm(a.n2, false, params.w(p + "mlp.gate_proj.weight"), true, 1f, 0f, null, a.gate);
      Ops.gemm(a.n2, false, params.w(p + "mlp.up_proj.weight"), true, 1f, 0f, null, a.up);
      Ops.swiglu(a.gate, a.up, a.act);
      Ops.gemm(a.act, false, params.w(p + "mlp.down_proj.weight"), true, 1f, 0f, null, tmp);
      Ops.add(a.x2, tmp, out);
    }
  }

  /** GPT-2 block backward: w.dres holds d(out) on entry and d(x) on exit. */
  private void gpt2BlockBackward(int l, Tensor x, BlockActs a, Workspace w) {
    String p = cfg.blockPrefix(l);
    Tensor dout = w.dres;
    // MLP: out = x2 + gelu(fc) @ Wp + bp
    Ops.gemm(a.gelu, true, dout, false, 1f, 1f, null, params.g(p + "mlp.c_proj.weight"));     // (F, C)
    Ops.sumRows(dout, params.g(p + "mlp.c_proj.bias"));
    Ops.gemm(dout, false, params.w(p + "mlp.c_proj.weight"), true, 1f, 0f, null, w.dF1);       // (N, F)
    Ops.geluBackward(a.fc, w.dF1, w.dF2);
    Ops.gemm(a.n2, true, w.dF2, false, 1f, 1f, null, params.g(p + "mlp.c_fc.weight"));         // (C, F)
    Ops.sumRows(w.dF2, params.g(p + "mlp.c_fc.bias"));
    Ops.gemm(w.dF2, false, params.w(p + "mlp.c_fc.weight"), true, 1f, 0f, null, w.d1);         // (N, C)
    Ops.layerNormBackward(w.d1, a.x2, params.w(p + "ln_2.weight"), a.mean2, a.rstd2, w.d2,
        params.g(p + "ln_2.weight"), params.g(p + "ln_2.bias"));
    Ops.add(w.d2, dout, w.d2);                                                                 // d(x2)
    // attention: x2 = x + att @ Wo + bo
    Ops.gemm(a.att, true, w.d2, false, 1f, 1f, null, params.g(p + "attn.c_proj.weight"));      // (C, C)
    Ops.sumRows(w.d2, params.g(p + "attn.c_proj.bias"));
    Ops.gemm(w.d2, false, params.w(p + "attn.c_proj.weight"), true, 1f, 0f, null, w.dAtt);     // (N, C)
    Ops.attentionBackward(a.heads.qh(), a.heads.kh(), a.heads.vh(), a.atth, a.lse, w.dAtth, w.dHeads.qh(),
        w.dHeads.kh(), w.dHeads.vh(), true, scale);
    Ops.gemm(a.n1, true, w.dHeads.qkv(), false, 1f, 1f, null, params.g(p + "attn.c_attn.weight"));     // (C, 3C)
    Ops.sumRows(w.dHeads.qkv(), params.g(p + "attn.c_attn.bias"));
    Ops.gemm(w.dHeads.qkv(), false, params.w(p + "attn.c_attn.weight"), true, 1f, 0f, null, w.d1);    // (N, C)
    Ops.layerNormBackward(w.d1, x, params.w(p + "ln_1.weight"), a.mean1, a.rstd1, dout,
        params.g(p + "ln_1.weight"), params.g(p + "ln_1.bias"));
    Ops.add(dout, w.d2, dout);
  }

  /** Llama block backward: w.dres holds d(out) on entry and d(x) on exit. */
  private void llamaBlockBackward(int l, Tensor x, BlockActs a, Workspace w) {
    String p = cfg.blockPrefix(l);
    Tensor dout = w.dres;
    // MLP: out = x2 + swiglu(n2 Wg^T, n2 Wu^T) Wd^T
    Ops.gemm(dout, true, a.act, false, 1f, 1f, null, params.g(p + "mlp.down_proj.weight"));    // (C, F)
    Ops.gemm(dout, false, params.w(p + "mlp.down_proj.weight"), false, 1f, 0f, null, w.dF1);   // (N, F)
    Ops.swigluBackward(a.gate, a.up, w.dF1, w.dF2, w.dF3);
    Ops.gemm(w.dF2, true, a.n2, false, 1f, 1f, null, params.g(p + "mlp.gate_proj.weight"));    // (F, C)
    Ops.gemm(w.dF3, true, a.n2, false, 1f, 1f, null, params.g(p + "mlp.up_proj.weight"));
    Ops.gemm(w.dF2, false, params.w(p + "mlp.gate_proj.weight"), false, 1f, 0f, null, w.d1);   // (N, C)
    Ops.gemm(w.dF3, false, params.w(p + "mlp.up_proj.weight"), false, 1f, 1f, null, w.d1);
    Ops.rmsNormBackward(w.d1, a.x2, params.w(p + "post_attention_layernorm.weight"), a.rstd2, w.d2,
        params.g(p + "post_attention_layernorm.weight"));
    Ops.add(w.d2, dout, w.d2);                                                                 // d(x2)
    // attention: x2 = x + att Wo^T
    Ops.gemm(w.d2, true, a.att, false, 1f, 1f, null, params.g(p + "self_attn.o_proj.weight"));  // (C, C)
    Ops.gemm(w.d2, false, params.w(p + "self_attn.o_proj.weight"), false, 1f, 0f, null, w.dAtt);
    Ops.attentionBackward(a.heads.qh(), a.heads.kh(), a.heads.vh(), a.atth, a.lse, w.dAtth, w.dHeads.qh(),
        w.dHeads.kh(), w.dHeads.vh(), true, scale);
    Ops.rope(w.dHeads.q4(), w.dHeads.q4(), 0, cfg.ropeTheta(), true);
    Ops.rope(w.dHeads.k4(), w.dHeads.k4(), 0, cfg.ropeTheta(), true);
    Ops.gemm(w.dHeads.q(), true, a.n1, false, 1f, 1f, null, params.g(p + "self_attn.q_proj.weight"));
    Ops.gemm(w.dHeads.k(), true, a.n1, false, 1f, 1f, null, params.g(p + "self_attn.k_proj.weight"));
    Ops.gemm(w.dHeads.v(), true, a.n1, false, 1f, 1f, null, params.g(p + "self_attn.v_proj.weight"));
    Ops.gemm(w.dHeads.q(), false, params.w(p + "self_attn.q_proj.weight"), false, 1f, 0f, null, w.d1);
    Ops.gemm(w.dHeads.k(), false, params.w(p + "self_attn.k_proj.weight"), false, 1f, 1f, null, w.d1);
    Ops.gemm(w.dHeads.v(), false, params.w(p + "self_attn.v_proj.weight"), false, 1f, 1f, null, w.d1);
    Ops.rmsNormBackward(w.d1, x, params.w(p + "input_layernorm.weight"), a.rstd1, dout,
        params.g(p + "input_layernorm.weight"));
    Ops.add(dout, w.d2, dout);
  }

  // ------------------------------------------------------------------ inference

  /** A key/value cache for {@code batch} sequences of up to {@code maxLen} tokens. */
  public KvCache newCache(int batch, int maxLen) {
    if (maxLen > cfg.maxSeqLen()) {
      throw new IllegalArgumentException("cache length " + maxLen + " exceeds the model's context " + cfg.maxSeqLen());
    }
    return new KvCache(cfg, device, dt, batch, maxLen);
  }

  /**
   * Runs {@code tokens} (B x n, row-major; B must be the cache's batch) at positions
   * {@code cache.length() .. cache.length() + n} through the model, appends their keys and values to the
   * cache, and returns the logits of the last position of each sequence as a host array (B x V, FP32).
   */
  public float[] forwardCached(KvCache cache, int[] tokens, int batch, int n) {
    if (batch != cache.batch()) throw new IllegalArgumentException("batch " + batch + " != cache batch " + cache.batch());
    checkTokens("tokens", tokens, batch, n, false);
    int pos = cache.length();
    if (pos + n > cache.capacity()) {
      throw new IllegalArgumentException("sequence of " + (pos + n) + " tokens exceeds the cache capacity "
          + cache.capacity() + " (model context " + cfg.maxSeqLen() + ")");
    }
    return InferenceStep.run(this, cache, tokens, batch, n, pos);
  }

  // ------------------------------------------------------------------ helpers

  Parameters params() {
    return params;
  }

  float attentionScale() {
    return scale;
  }

  private void checkTokens(String what, int[] ids, int batch, int seq, boolean allowNegative) {
    Objects.requireNonNull(ids, what);
    if (batch <= 0 || seq <= 0) throw new IllegalArgumentException("batch " + batch + " and seq " + seq + " must be > 0");
    if ((long) batch * seq != ids.length) {
      throw new IllegalArgumentException(what + " has " + ids.length + " ids, expected batch " + batch + " x seq " + seq);
    }
    if (seq > cfg.maxSeqLen()) {
      throw new IllegalArgumentException("sequence length " + seq + " exceeds the model's context " + cfg.maxSeqLen());
    }
    int v = cfg.vocabSize();
    for (int i = 0; i < ids.length; i++) {
      int id = ids[i];
      if (id >= v || id < 0 && !allowNegative) {
        throw new IllegalArgumentException(what + "[" + i + "] = " + id + " is outside the vocabulary [0, " + v + ")");
      }
    }
  }

  private Workspace workspace(int batch, int seq) {
    if (ws != null && ws.batch == batch && ws.seq == seq) return ws;
    releaseWorkspace();
    ws = new Workspace(cfg, device, dt, batch, seq, recompute);
    return ws;
  }

  /** Frees the activation buffers (they are reallocated by the next forward). */
  public void releaseWorkspace() {
    if (ws != null) {
      ws.close();
      ws = null;
    }
    validTargets = -1;
  }

  @Override
  public void close() {
    releaseWorkspace();
    params.close();
  }
}
