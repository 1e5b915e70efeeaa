package dev.athanor.nn;

import dev.athanor.memory.Tier;
import dev.athanor.nn.BlockHooks.Pass;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParamSpec;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A decoder-only transformer of the GPT-2 or Llama family on one device, or one {@link Stage} of it (a range of
 * blocks with or without the embeddings and the head), with an explicit forward and backward per block (llm.c
 * style): every activation a block's backward needs is a named buffer ({@link BlockActs}), so lifetimes are known
 * before a step runs. Parameters, gradients and optimizer state live in one {@link ParameterStore}; one
 * {@link Block} implementation per family serves training and cached decoding; {@link BlockHooks} are called at
 * every unit boundary.
 *
 * <p>Training: {@link #forward(int[], int[], int, int)} returns the mean loss over the targets that are
 * {@code >= 0} and keeps the activations; {@link #backward(float)} then accumulates parameter gradients into the
 * store's {@link Role#GRAD} buffer. A stage without the embeddings takes its input as hidden states
 * ({@link #forward(Tensor, int[], int, int)}) and gives their gradient ({@link #inputGradient()}); a stage without
 * the head gives its output ({@link #output()}) and takes its gradient ({@link #backward(Tensor)}). On the CPU
 * everything is FP32 by default; on CUDA weights are used in BF16 (copies of the FP32 masters), activations are
 * BF16, and gradients of parameters, norms' statistics and the loss are FP32. Inference: {@link #newCache(int, int)}
 * and {@link #forwardCached(KvCache, int[], int, int)}.
 *
 * <p>Tensor parallelism ({@link TensorParallel}): a model built for one rank of {@code tp} holds that rank's part of
 * every block and of the vocabulary (token embedding, head: its columns of the logits, whose cross-entropy is put
 * together over the ranks without the whole logits) and sums over the ranks inside its forward and backward; the rest
 * of this API is unchanged ({@link #lastLogits()} becomes a collective), and the loss and every replicated parameter
 * come out the same on every rank.
 *
 * <p>Not thread-safe: one step at a time.
 */
public final class Transformer implements AutoCloseable {
  private final ModelConfig cfg;
  private final Stage stage;
  private final Device device;
  private final DType dt;
  private final ParameterStore store;
  private final TensorParallel tp;              // this rank's part of every block (TensorParallel.NONE: all of it)
  private final TensorParallel.AllReduce tpSum; // the sum over the tensor-parallel ranks
  private BlockHooks hooks = BlockHooks.NONE;
  private java.util.function.Function<KvCache.Layout, KvCache.Paging> kvPaging;  // null: caches in memory
  private TensorParallel.TokenCollectives tokens;  // sequence parallelism over the tensor-parallel ranks; null: off
  private boolean recompute;
  private boolean offloadActivations; // the blocks' saved activations in a ring, emptied and refilled by the hooks
  private Workspace ws;
  private int activationSets = 1; // micro-batches whose activations are kept at once (see setActivationSets)
  private int activationSet;      // the selected one
  private int[] valid = {-1};     // per activation set: the valid targets of its forward; -1: none to backpropagate
  private int validTargets = -1;  // of the selected set's last forward; -1 when there is none to backpropagate
  private boolean backwardDone;   // the last backward ran (inputGradient() is valid)

  // bound to the store's buffers of generation `bound`
  private int bound = -1;
  private Block[] blocks;
  private Weight tokenEmbedding, positionEmbedding, headWeight;
  private Norm finalNorm;
  private Unit embeddingUnit, headUnit;

  /**
   * A model with all-zero parameters on {@code device}, computing in {@code computeDtype}: F32, BF16 or F16 on
   * either backend (BF16 on the CPU rounds at the same points as on CUDA, which lets the GPU's tolerances be
   * checked without a GPU; it is not faster there).
   */
  public Transformer(ModelConfig config, Device device, DType computeDtype) {
    this(config, device, computeDtype, Stage.whole(config));
  }

  /** One stage of a model with all-zero parameters (see {@link #Transformer(ModelConfig, Device, DType)}). */
  public Transformer(ModelConfig config, Device device, DType computeDtype, Stage stage) {
    this(config, device, computeDtype, stage, true, TensorParallel.NONE, TensorParallel.AllReduce.NONE);
  }

  /**
   * One rank's part of a tensor-parallel model with all-zero parameters: its store holds its {@link TensorParallel#local}
   * parts of the split weights and the replicated ones whole; {@code sum} adds a tensor over the tensor-parallel ranks
   * (every rank calls the same sums in the same order, in its forward and backward). Weights given to {@link #initialize},
   * {@link #loadWeights} and {@link #loadWeight} are the whole model's, cut here; {@link #weights()} are this rank's
   * parts. Cached decoding needs one process.
   */
  public Transformer(ModelConfig config, Device device, DType computeDtype, TensorParallel tp, TensorParallel.AllReduce sum) {
    this(config, device, computeDtype, Stage.whole(config), true, tp, sum);
  }

  /**
   * One tensor-parallel rank's part of one pipeline stage with all-zero parameters: {@code stage}'s units, the blocks'
   * split weights cut as in {@link #Transformer(ModelConfig, Device, DType, TensorParallel, TensorParallel.AllReduce)},
   * the token embedding and the head (when the stage has them) cut along the vocabulary; {@code sum} adds over the
   * stage's tensor-parallel ranks.
   */
  public Transformer(ModelConfig config, Device device, DType computeDtype, Stage stage, TensorParallel tp,
      TensorParallel.AllReduce sum) {
    this(config, device, computeDtype, stage, true, tp, sum);
  }

  /**
   * A model on {@code device} in its default compute dtype whose weights are not allocated: they are to live
   * elsewhere from the start (e.g. on the DISK tier, {@code dev.athanor.offload.OffloadedWeights}), so a model larger
   * than memory never holds them all. Page them in before any other use.
   */
  public static Transformer withoutWeights(ModelConfig config, Device device) {
    return new Transformer(config, device, defaultComputeDtype(device), Stage.whole(config), false, TensorParallel.NONE,
        TensorParallel.AllReduce.NONE);
  }

  private Transformer(ModelConfig config, Device device, DType computeDtype, Stage stage, boolean allocateWeights,
      TensorParallel tp, TensorParallel.AllReduce sum) {
    this.cfg = Objects.requireNonNull(config, "config");
    this.tp = Objects.requireNonNull(tp, "tp");
    this.tpSum = Objects.requireNonNull(sum, "sum");
    tp.check(config);
    this.device = Objects.requireNonNull(device, "device");
    this.dt = Objects.requireNonNull(computeDtype, "computeDtype");
    this.stage = Objects.requireNonNull(stage, "stage");
    if (dt == DType.I32) throw new IllegalArgumentException("compute dtype must be floating, got " + dt);
    if (device.isCuda() && !List.of(32, 64, 96, 128).contains(config.headDim())) {
      throw new IllegalArgumentException("CUDA attention supports head dims 32, 64, 96 and 128; this model has "
          + config.headDim() + " (hidden " + config.hidden() + " / heads " + config.heads() + ")");
    }
    this.store = new ParameterStore(tp.localUnits(config, stage), device, dt, allocateWeights);
  }

  /** A model on {@code device} in its default compute dtype: F32 on the CPU, BF16 on CUDA. */
  public static Transformer create(ModelConfig config, Device device) {
    return new Transformer(config, device, defaultComputeDtype(device));
  }

  /** The compute dtype of {@link #create}: F32 on the CPU, BF16 on CUDA. */
  public static DType defaultComputeDtype(Device device) {
    return device.isCuda() ? DType.BF16 : DType.F32;
  }

  public ModelConfig config() {
    return cfg;
  }

  public Stage stage() {
    return stage;
  }

  /** This model's tensor-parallel part ({@link TensorParallel#NONE} in one process). */
  public TensorParallel tensorParallel() {
    return tp;
  }

  public Device device() {
    return device;
  }

  public DType computeDtype() {
    return dt;
  }

  /** The parameter store: weights, masters, gradients and optimizer state in flat buffers per role. */
  public ParameterStore parameters() {
    return store;
  }

  /** Sets the hooks called at unit boundaries ({@link BlockHooks#NONE} to remove them). */
  public void setHooks(BlockHooks hooks) {
    this.hooks = Objects.requireNonNull(hooks, "hooks");
  }

  /** The hooks called at unit boundaries ({@link BlockHooks#NONE} when none are set). */
  public BlockHooks hooks() {
    return hooks;
  }

  /**
   * Makes the caches {@link #newCache} returns from now on paged by what {@code paging} makes for each (e.g. their layers
   * in files on DISK, {@code dev.athanor.offload.KvCacheOnDisk}); null: in memory. CPU backend only: the paging's
   * windows are HOST tensors the CPU kernels read.
   */
  public void setKvCachePaging(java.util.function.Function<KvCache.Layout, KvCache.Paging> paging) {
    if (paging != null && device.isCuda()) {
      throw new IllegalStateException("a paged KV cache needs the CPU backend, not " + device + ": on CUDA it stays in memory");
    }
    this.kvPaging = paging;
  }

  /** What makes the caches' paging ({@link #setKvCachePaging}), or null when they are in memory. */
  public java.util.function.Function<KvCache.Layout, KvCache.Paging> kvCachePaging() {
    return kvPaging;
  }

  /**
   * Recompute each block's activations during the backward instead of keeping them from the forward:
   * activation memory drops from L blocks to one (plus the L+1 residual streams) for one more forward.
   */
  public void setRecompute(boolean on) {
    if (on && offloadActivations) {
      throw new IllegalStateException("the activations are offloaded (setOffloadedActivations): they cannot also be recomputed");
    }
    if (on != recompute) {
      recompute = on;
      releaseWorkspace();
    }
  }

  public boolean recompute() {
    return recompute;
  }

  /**
   * Offloaded activations: the blocks' saved activations live in a ring of {@link #activationRing()} buffers instead of
   * one per block, block i's in slot {@code i % ring}, so that activation memory drops from L blocks to the ring (plus
   * the L+1 residual streams) with no extra computation; the hooks move them out and back. Contract for the hooks:
   * after {@code saveActivations(i, a)} the buffers of {@code a} are refilled by block {@code i + ring}'s forward, which
   * starts with {@code beforeWeights} of its unit, so whatever reads them (a write to DISK) must be done by then; the
   * last {@code ring} blocks' activations are never refilled before their backward. {@code restoreActivations(i, a)}
   * must leave block i's activations in {@code a}; the slot of block {@code i - 1} is free from then on (its last user,
   * block {@code i - 1 + ring}, has run its backward), so it can be filled ahead. Needs one activation set and no
   * recomputation. Frees the activations.
   */
  public void setOffloadedActivations(boolean on) {
    if (on && recompute) throw new IllegalStateException("the activations are recomputed: they cannot also be offloaded");
    if (on && activationSets > 1) {
      throw new IllegalStateException("offloaded activations need one activation set, not " + activationSets
          + " (a pipeline stage's micro-batches in flight)");
    }
    if (on != offloadActivations) {
      offloadActivations = on;
      releaseWorkspace();
    }
  }

  /** Whether the blocks' activations are offloaded ({@link #setOffloadedActivations}). */
  public boolean offloadedActivations() {
    return offloadActivations;
  }

  /**
   * The blocks whose saved activations share memory when they are offloaded: block i's and block {@code i + ring}'s
   * are the same buffers ({@link #setOffloadedActivations}); 2, or the stage's blocks when fewer.
   */
  public int activationRing() {
    return Workspace.ringSize(stage);
  }

  /**
   * Megatron-style sequence parallelism over the tensor-parallel ranks ({@code tokens} their collectives; null turns it
   * off): the residual stream, the norms and the residual adds work on this rank's token rows only ({@link
   * TensorParallel#tokenStart}), gathered before each column-parallel layer and reduce-scattered after each row-parallel
   * one instead of all-reduced, so the residual streams and the blocks' norm activations take 1/tp of the rows (see
   * {@code SequenceParallel}). The loss, the gradients and {@link #lastLogits()} are unchanged (with B*T/tp a multiple
   * of {@link dev.athanor.ops.Ops#NORM_ROW_CHUNK} bit for bit). Needs a tensor-parallel model. A pipeline stage's input
   * and output hidden states ({@link #forward(Tensor, int[], int, int)}, {@link #output()}) and their gradients are then
   * this rank's rows only ({@link TensorParallel#tokenRows}). Frees the activations.
   */
  public void setSequenceParallel(TensorParallel.TokenCollectives tokens) {
    if (tokens != null && !tp.split()) {
      throw new IllegalStateException("sequence parallelism needs tensor-parallel ranks (--tp 2 or more); this model is " + tp);
    }
    if (tokens != this.tokens) {
      this.tokens = tokens;
      releaseWorkspace();
    }
  }

  /** Whether sequence parallelism is on ({@link #setSequenceParallel}). */
  public boolean sequenceParallel() {
    return tokens != null;
  }

  /**
   * Keeps {@code n} sets of activations (at least 1; a pipeline stage's micro-batches in flight): each forward fills
   * the {@linkplain #activationSet(int) selected} set and a backward reads it, so up to {@code n} forwards can run
   * before their backwards without recomputing any. Every buffer a forward fills and its backward reads exists once
   * per set (with {@link #setRecompute recomputation}: the block inputs only); the gradient scratch is shared, so
   * {@link #inputGradient()} is the last backward's whatever set it ran on. Changing {@code n} frees the activations.
   */
  public void setActivationSets(int n) {
    if (n < 1) throw new IllegalArgumentException("activation sets " + n + " must be >= 1");
    if (n == activationSets) return;
    if (n > 1 && offloadActivations) {
      throw new IllegalStateException("offloaded activations need one activation set, not " + n);
    }
    releaseWorkspace();
    activationSets = n;
    activationSet = 0;
    valid = new int[n];
    Arrays.fill(valid, -1);
  }

  /** The number of activation sets ({@link #setActivationSets}). */
  public int activationSets() {
    return activationSets;
  }

  /**
   * Selects activation set {@code i} (in [0, {@link #activationSets()})): the next {@code forward} fills it, and
   * {@code backward}, {@link #output()}, {@link #tokenLosses()} and {@link #lastLogits()} read that set's last forward.
   */
  public void activationSet(int i) {
    if (i < 0 || i >= activationSets) {
      throw new IllegalArgumentException("activation set " + i + " is outside [0, " + activationSets + ")");
    }
    if (i == activationSet) return;
    valid[activationSet] = validTargets;
    activationSet = i;
    validTargets = valid[i];
    if (ws != null) ws.select(i);
  }

  /** Resolves the typed weights of every unit from the store's current buffers (after they changed). */
  private void bind() {
    if (bound == store.generation()) return;
    blocks = new Block[stage.blocks()];
    for (int i = 0; i < blocks.length; i++) blocks[i] = Block.bind(cfg, stage.firstBlock() + i, store, tp, tpSum);
    boolean gpt2 = cfg.family() == Family.GPT2;
    if (stage.embedding()) {
      embeddingUnit = store.unit(ModelConfig.EMBEDDING_UNIT);
      tokenEmbedding = Weight.of(store, cfg.embeddingName());
      positionEmbedding = gpt2 ? Weight.of(store, "transformer.wpe.weight") : Weight.NONE;
    }
    if (stage.head()) {
      headUnit = store.unit(ModelConfig.HEAD_UNIT);
      finalNorm = gpt2
          ? Norm.of(cfg, Weight.of(store, "transformer.ln_f.weight"), Weight.of(store, "transformer.ln_f.bias"))
          : Norm.of(cfg, Weight.of(store, "model.norm.weight"), Weight.NONE);
      headWeight = Weight.of(store, headName());
    }
    bound = store.generation();
  }

  /** Name of the output head's weight: the token embedding when tied. */
  String headName() {
    return cfg.tiedEmbeddings() ? cfg.embeddingName() : "lm_head.weight";
  }

  // ------------------------------------------------------------------ weights

  /**
   * Seeded initialization: weights and embeddings from N(0, 0.02), the residual projections (GPT-2's
   * {@code c_proj}, Llama's {@code o_proj} and {@code down_proj}) from N(0, 0.02 / sqrt(2 layers)), biases
   * 0, norm weights 1. Each tensor draws from its own range of the counter-based stream (its place in the whole
   * model, so a stage initializes its tensors as the whole model would), and the result does not depend on the
   * device's thread count. Under tensor parallelism each rank draws the whole tensor and keeps its part, so every
   * layout starts from the same model.
   */
  public void initialize(long seed) {
    double resStd = 0.02 / Math.sqrt(2.0 * cfg.layers());
    Map<String, Long> offsets = new HashMap<>();
    long offset = 0;
    for (ParamSpec s : cfg.parameterSpecs()) {
      offsets.put(s.name(), offset);
      offset += 2 * s.numel();
    }
    Map<String, ParamSpec> full = new HashMap<>();
    for (ParamSpec s : cfg.parameterSpecs()) full.put(s.name(), s);
    for (ParameterStore.Param p : store.list()) {
      String name = p.name();
      Tensor master = p.master();
      TensorParallel.Split split = TensorParallel.split(cfg, name);
      boolean whole = !tp.split() || split.replicated();
      // masters paged to DISK (offload) are drawn in host memory one tensor at a time, then written; a split tensor is
      // drawn whole in host memory, then cut
      try (Tensor host = master.tier() == Tier.DISK || !whole
          ? Tensor.empty(DType.F32, Device.CPU, full.get(name).shape()) : null) {
        Tensor dst = host != null ? host : master;
        if (p.spec().shape().length >= 2) {
          boolean residual = name.endsWith("c_proj.weight") || name.endsWith("o_proj.weight")
              || name.endsWith("down_proj.weight");
          Ops.randNormal(dst, seed, offsets.get(name), 0f, (float) (residual ? resStd : 0.02));
        } else {
          Ops.fill(dst, name.endsWith(".bias") ? 0f : 1f);
        }
        if (host != null) copyWeight(p, host);
      }
    }
    store.syncWeights();
    if (store.has(Role.GRAD) && !store.isPaged(Role.GRAD)) store.zero(Role.GRAD);
  }

  /**
   * Copies weights into the model: every parameter must be present, with its exact shape (the whole model's: a
   * tensor-parallel rank takes its part), in any floating dtype, on any device (e.g. host tensors from a safetensors
   * file).
   */
  public void loadWeights(Map<String, Tensor> weights) {
    for (ParameterStore.Param p : store.list()) {
      if (weights.get(p.name()) == null) throw new IllegalArgumentException("missing weight \"" + p.name() + "\"");
    }
    for (ParameterStore.Param p : store.list()) copyWeight(p, weights.get(p.name()));
    store.syncWeights();
  }

  /**
   * Copies one parameter's weights into the model ({@code src} with its exact shape, any floating dtype, on any
   * device), e.g. while streaming a model's files one tensor at a time.
   */
  public void loadWeight(String name, Tensor src) {
    ParameterStore.Param p = store.get(name);
    copyWeight(p, src);
    store.syncWeights(p.range());
  }

  private void copyWeight(ParameterStore.Param p, Tensor src) {
    Objects.requireNonNull(src, p.name());
    TensorParallel.Split split = TensorParallel.split(cfg, p.name());
    long[] want = tp.split() && !split.replicated() ? TensorParallel.wholeShape(cfg, p.name()) : p.spec().shape();
    if (!Arrays.equals(src.shape(), want)) {
      throw new IllegalArgumentException("weight \"" + p.name() + "\" has shape " + Arrays.toString(src.shape())
          + ", expected " + Arrays.toString(want));
    }
    if (!src.dtype().isFloating()) throw new IllegalArgumentException("weight \"" + p.name() + "\" is " + src.dtype());
    if (Arrays.equals(want, p.spec().shape())) {
      copyLocal(p, src);
      return;
    }
    try (Tensor part = Tensor.empty(src.dtype(), src.device(), p.spec().shape())) {  // this rank's part, then as above
      tp.shard(split, src, part);
      copyLocal(p, part);
    }
  }

  private void copyLocal(ParameterStore.Param p, Tensor src) {
    try (Tensor onDevice = src.device().equals(device) ? null : src.to(device)) {
      Tensor s = onDevice == null ? src : onDevice;
      if (s.dtype() == DType.F32) {
        p.master().copyFrom(s);
      } else if (p.master().tier() == Tier.DISK) {  // masters paged to DISK: converted in host memory, then written
        try (Tensor c = s.contiguous(); Tensor f = Ops.convert(c, DType.F32)) {
          p.master().copyFrom(f);
        }
      } else {
        Ops.convert(s.contiguous(), p.master());
      }
    }
  }

  /**
   * The FP32 master weights by Hugging Face name, in layout order (owned by the model: do not close them); a
   * tensor-parallel rank's parts of the split ones ({@code dev.athanor.dist.TensorParallelism} gathers the whole).
   */
  public Map<String, Tensor> weights() {
    Map<String, Tensor> m = new LinkedHashMap<>();
    for (ParameterStore.Param p : store.list()) m.put(p.name(), p.master());
    return m;
  }

  // ------------------------------------------------------------------ training forward / backward

  /**
   * Forward pass over {@code inputs} (B x T token ids, row-major) computing the mean cross-entropy
   * against {@code targets} (B x T; a negative target is ignored). Keeps the activations for
   * {@link #backward(float)}. Returns 0 when every target is ignored. A stage without the head takes
   * {@code targets == null} and returns NaN; its result is {@link #output()}.
   */
  public float forward(int[] inputs, int[] targets, int batch, int seq) {
    if (!stage.embedding()) {
      throw new IllegalStateException("stage " + stage + " has no embeddings: pass its input hidden states to forward(Tensor, ...)");
    }
    checkTokens("inputs", inputs, batch, seq, false);
    Workspace w = prepare(targets, batch, seq);
    w.ids.copyFrom(inputs);
    return runForward(w, targets, null);
  }

  /**
   * {@link #forward(int[], int[], int, int)} leaving the mean cross-entropy in {@code loss} (F32, one element on the
   * model's device; e.g. a slot of a training step's losses) instead of returning it, so the host does not wait for
   * the device ({@link Ops#lossMean}: the bits the float overload returns). Not for a stage without the head. With a
   * split vocabulary (tensor parallelism) the loss is formed on the host, as there, and copied into {@code loss}.
   */
  public void forward(int[] inputs, int[] targets, int batch, int seq, Tensor loss) {
    Objects.requireNonNull(loss, "loss");
    if (!stage.head()) throw new IllegalStateException("stage " + stage + " has no head: it has no loss");
    if (loss.dtype() != DType.F32 || loss.numel() != 1 || !loss.device().equals(device)) {
      throw new IllegalArgumentException("loss must be one F32 element on " + device + ", got "
          + Arrays.toString(loss.shape()) + " " + loss.dtype() + " on " + loss.device());
    }
    if (!stage.embedding()) {
      throw new IllegalStateException("stage " + stage + " has no embeddings: pass its input hidden states to forward(Tensor, ...)");
    }
    checkTokens("inputs", inputs, batch, seq, false);
    Workspace w = prepare(targets, batch, seq);
    w.ids.copyFrom(inputs);
    runForward(w, targets, loss);
  }

  /**
   * Forward pass of a stage without the embeddings: {@code hidden} (B*T, C) in the compute dtype is the output of
   * the stage before (with sequence parallelism this rank's rows of it, ({@link TensorParallel#tokenRows}, C)).
   * Otherwise as {@link #forward(int[], int[], int, int)}.
   */
  public float forward(Tensor hidden, int[] targets, int batch, int seq) {
    if (stage.embedding()) throw new IllegalStateException("stage " + stage + " starts with the embeddings: pass token ids");
    Objects.requireNonNull(hidden, "hidden");
    if (batch <= 0 || seq <= 0) throw new IllegalArgumentException("batch " + batch + " and seq " + seq + " must be > 0");
    long[] want = {boundaryRows(batch, seq), cfg.hidden()};
    if (!Arrays.equals(hidden.shape(), want) || hidden.dtype() != dt) {
      throw new IllegalArgumentException("hidden must be " + Arrays.toString(want) + " " + dt + ", got "
          + Arrays.toString(hidden.shape()) + " " + hidden.dtype());
    }
    Workspace w = prepare(targets, batch, seq);
    w.residual[0].copyFrom(hidden);
    return runForward(w, targets, null);
  }

  /**
   * The rows of a pipeline stage's input and output hidden states (and their gradients) for a {@code batch × seq}
   * micro-batch: all {@code B*T}, or with sequence parallelism this rank's ({@link TensorParallel#tokenRows}).
   */
  public long boundaryRows(int batch, int seq) {
    long n = (long) batch * seq;
    return tokens != null ? tp.tokenRows(n, tp.rank()) : n;
  }

  private Workspace prepare(int[] targets, int batch, int seq) {
    if (seq > cfg.maxSeqLen()) {
      throw new IllegalArgumentException("sequence length " + seq + " exceeds the model's context " + cfg.maxSeqLen());
    }
    if (stage.head()) {
      checkTokens("targets", targets, batch, seq, true);
    } else if (targets != null) {
      throw new IllegalArgumentException("stage " + stage + " has no head: targets must be null");
    }
    validTargets = -1;
    backwardDone = false;
    bind();
    Workspace w = workspace(batch, seq);
    if (targets != null) w.targets.copyFrom(targets);
    return w;
  }

  /** The forward pass; the mean loss returned, or with {@code lossOut} left there (NaN returned). */
  private float runForward(Workspace w, int[] targets, Tensor lossOut) {
    if (offloadActivations && hooks == BlockHooks.NONE && blocks.length > activationRing()) {
      throw new IllegalStateException("offloaded activations need hooks that save and restore them (an ActivationPager): "
          + "without them the ring's slots are refilled before the backward reads them");
    }
    if (stage.embedding()) embeddingForward(w.ids, w.localPositions, w.residual[0], w.scratch);
    for (int i = 0; i < blocks.length; i++) {
      Block b = blocks[i];
      BlockActs a = w.acts(i);
      hooks.beforeWeights(b.unit, Pass.FORWARD);
      b.forward(w.residual[i], a, w.residual[i + 1], w.scratch, null);
      if (!recompute) hooks.saveActivations(b.index, a);
      hooks.afterWeights(b.unit, Pass.FORWARD);
    }
    if (!stage.head()) {
      validTargets = 0;
      return Float.NaN;
    }
    beforeHead(Pass.FORWARD);
    finalNorm.forward(w.residual[blocks.length], w.normOut, w.normMean, w.normRstd);
    Tensor normed = w.split != null ? w.split.gather(w.normOut) : w.normOut;  // sequence parallel: all rows
    Ops.gemm(normed, false, headWeight.w(), true, 1f, 0f, null, w.logits);  // (N, V) = x @ W^T (tp: this rank's V)
    afterHead(Pass.FORWARD);
    if (tp.split()) {
      vocabParallelCrossEntropy(w, targets);
    } else {
      Ops.crossEntropy(w.logits, w.targets, w.losses, w.lse);
    }
    int valid = 0;
    for (int t : targets) if (t >= 0) valid++;
    validTargets = valid;
    if (lossOut != null && !tp.split()) {
      Ops.lossMean(w.losses, w.targets, lossOut);  // formed on the device: no synchronisation
      return Float.NaN;
    }
    if (lossOut != null) {
      lossOut.copyFrom(new float[] {meanLoss(w, targets, valid)});
      return Float.NaN;
    }
    return meanLoss(w, targets, valid);
  }

  /** The mean of the kept rows' losses, read to the host (synchronises). */
  private static float meanLoss(Workspace w, int[] targets, int valid) {
    if (valid == 0) return 0f;
    float[] l = w.losses.toFloatArray();
    double sum = 0;
    for (int i = 0; i < l.length; i++) if (targets[i] >= 0) sum += l[i];
    return (float) (sum / valid);
  }

  /**
   * The cross-entropy of a tensor-parallel rank's logits, its vocabulary columns {@code [lo, hi)}, without the whole
   * (N, V): each rank's per-row log-sum-exp {@code lse_r} and (on the rank holding the target) {@code lse_r - z_t} are
   * put together on every rank (a sum over ranks of vectors that are zero but at the rank's place, so exact), and each
   * row's {@code LSE = m + log(sum_r exp(lse_r - m))} ({@code m} the largest, the sum in rank order in double) and
   * {@code loss = (lse_owner - z_t) + (LSE - lse_owner)} are computed on the host identically on every rank. Leaves the
   * global {@code LSE} in {@code w.lse} for the backward and the losses in {@code w.losses}.
   */
  private void vocabParallelCrossEntropy(Workspace w, int[] targets) {
    int n = targets.length, lo = tp.vocabStart(cfg), hi = tp.vocabEnd(cfg), size = tp.size(), me = tp.rank();
    int[] local = new int[n];
    for (int i = 0; i < n; i++) local[i] = targets[i] >= lo && targets[i] < hi ? targets[i] - lo : -1;
    w.targets.copyFrom(local);
    Ops.crossEntropy(w.logits, w.targets, w.losses, w.lse);
    float[] lse = w.lse.toFloatArray(), loss = w.losses.toFloatArray();
    float[] all = new float[2 * n * size];  // (size, 2, n): rank r's lse, then its losses, at its place
    System.arraycopy(lse, 0, all, 2 * n * me, n);
    System.arraycopy(loss, 0, all, 2 * n * me + n, n);
    try (Tensor t = Tensor.of(all, all.length)) {
      tpSum.allReduceSum(t);
      all = t.toFloatArray();
    }
    TensorParallel whole = new TensorParallel(size, 0);
    for (int i = 0; i < n; i++) {
      float m = Float.NEGATIVE_INFINITY;
      for (int r = 0; r < size; r++) m = Math.max(m, all[2 * n * r + i]);
      double sum = 0;
      for (int r = 0; r < size; r++) sum += Math.exp((double) all[2 * n * r + i] - m);
      lse[i] = (float) (m + Math.log(sum));
      if (targets[i] < 0) {
        loss[i] = 0f;
        continue;
      }
      int owner = 0;
      while (targets[i] >= whole.chunkStart(cfg.vocabSize(), owner + 1)) owner++;
      loss[i] = all[2 * n * owner + n + i] + (lse[i] - all[2 * n * owner + i]);
    }
    w.lse.copyFrom(lse);
    w.losses.copyFrom(loss);
    // the backward's targets: this rank's column, the dummy column V_local where another rank holds it, -1 ignored
    for (int i = 0; i < n; i++) if (local[i] < 0 && targets[i] >= 0) local[i] = hi - lo;
    w.targets.copyFrom(local);
  }

  /**
   * x0 (N, C) = token embeddings of ids (+ position embeddings for GPT-2; tmp (N, C) is scratch). Sequence parallel:
   * x0 and tmp hold this rank's rows, {@code positions} theirs.
   */
  private void embeddingForward(Tensor ids, Tensor positions, Tensor x0, Tensor tmp) {
    hooks.beforeWeights(embeddingUnit, Pass.FORWARD);
    if (tp.split()) {
      // vocabulary-parallel: each rank looks up its tokens (zeros for the others'), the lookups summed over the ranks
      // (sequence parallel: reduce-scattered, each rank its rows of the sum)
      localIds(ids);
      Tensor all = ws.split != null ? ws.split.full : x0;
      Ops.embedding(ws.localIds, tokenEmbedding.w(), all);
      Ops.mul(all, ws.vocabMask, all);
      if (ws.split != null) {
        ws.split.scatterSum(all, x0);
      } else {
        tpSum.allReduceSum(x0);
      }
    } else {
      Ops.embedding(ids, tokenEmbedding.w(), x0);
    }
    if (positionEmbedding.w() != null) {
      Ops.embedding(positions, positionEmbedding.w(), tmp);
      Ops.add(x0, tmp, x0);
    }
    hooks.afterWeights(embeddingUnit, Pass.FORWARD);
  }

  /**
   * Fills {@code ws.localIds} with {@code ids} as rows of this rank's vocabulary part (0 for another rank's token) and
   * {@code ws.vocabMask} with 1 on the rows of this rank's tokens, 0 elsewhere.
   */
  private void localIds(Tensor ids) {
    int[] v = ids.toIntArray();
    int lo = tp.vocabStart(cfg), hi = tp.vocabEnd(cfg), c = cfg.hidden();
    float[] mask = new float[v.length * c];
    for (int i = 0; i < v.length; i++) {
      boolean mine = v[i] >= lo && v[i] < hi;
      v[i] = mine ? v[i] - lo : 0;
      if (mine) Arrays.fill(mask, i * c, (i + 1) * c, 1f);
    }
    ws.localIds.copyFrom(v);
    ws.vocabMask.copyFrom(mask);  // 0 and 1 are exact in every compute dtype
  }

  private void beforeHead(Pass pass) {
    hooks.beforeWeights(headUnit, pass);
    if (cfg.tiedEmbeddings() && stage.embedding()) hooks.beforeWeights(embeddingUnit, pass);
  }

  private void afterHead(Pass pass) {
    if (cfg.tiedEmbeddings() && stage.embedding()) hooks.afterWeights(embeddingUnit, pass);
    hooks.afterWeights(headUnit, pass);
  }

  /**
   * Backward pass of the last {@link #forward}: accumulates {@code gradScale * d(mean loss)/d(param)}
   * into the store's {@link Role#GRAD} buffer (allocated, zero, on first use; use {@code 1 / accumulationSteps}
   * for gradient accumulation).
   */
  public void backward(float gradScale) {
    if (!stage.head()) throw new IllegalStateException("stage " + stage + " has no head: pass d(output) to backward(Tensor)");
    Workspace w = startBackward();
    int valid = validTargets;
    validTargets = -1;
    Ops.fill(w.dlosses, valid == 0 ? 0f : gradScale / valid);  // no valid target: every gradient is zero
    headBackward(w);
    blocksBackward(w);
  }

  /**
   * Backward pass of a stage without the head: {@code dOutput} (B*T, C) in the compute dtype is the gradient of
   * {@link #output()} from the stage after. Accumulates into the {@link Role#GRAD} buffer.
   */
  public void backward(Tensor dOutput) {
    if (stage.head()) throw new IllegalStateException("stage " + stage + " ends with the head: use backward(gradScale)");
    Workspace w = startBackward();
    validTargets = -1;
    w.dres.copyFrom(dOutput);
    blocksBackward(w);
  }

  private Workspace startBackward() {
    if (validTargets < 0 || ws == null) throw new IllegalStateException("backward() needs a forward() first");
    if (!store.has(Role.GRAD)) store.allocate(Role.GRAD);
    bind();
    return ws;
  }

  private void headBackward(Workspace w) {
    beforeHead(Pass.BACKWARD);
    // logits -> dlogits in place (tp: softmax with the global LSE; a row whose target another rank holds puts its -1
    // into the dummy column, so this rank's columns get the softmax alone)
    Tensor lg = tp.split() ? w.logitsWide : w.logits;
    Ops.crossEntropyBackward(lg, w.targets, w.lse, w.dlosses, lg);
    SequenceParallel sp = w.split;  // sequence parallel: the final norm's rows gathered again, d1 reduce-scattered
    Tensor normed = sp != null ? sp.gather(w.normOut) : w.normOut;
    Ops.gemm(w.logits, true, normed, false, 1f, 1f, null, headWeight.g());        // (V, C) += dlogits^T @ x
    Tensor d1 = sp != null ? sp.full : w.d1;
    Ops.gemm(w.logits, false, headWeight.w(), false, 1f, 0f, null, d1);           // (N, C) = dlogits @ W
    // tp: the ranks' vocabulary parts of the input gradient, summed (a column-parallel layer)
    if (sp != null) {
      sp.scatterSum(d1, w.d1);
      sp.normBackward(finalNorm, w.d1, w.residual[blocks.length], w.normMean, w.normRstd, w.dres);
    } else {
      tpSum.allReduceSum(w.d1);
      finalNorm.backward(w.d1, w.residual[blocks.length], w.normMean, w.normRstd, w.dres);
    }
    afterHead(Pass.BACKWARD);
    hooks.afterGradients(headUnit);
  }

  private void blocksBackward(Workspace w) {
    for (int i = blocks.length - 1; i >= 0; i--) {
      Block b = blocks[i];
      BlockActs a = w.acts(i);
      hooks.beforeWeights(b.unit, Pass.BACKWARD);
      if (recompute) {
        b.forward(w.residual[i], a, w.scratch, w.scratch, null);
      } else {
        hooks.restoreActivations(b.index, a);
      }
      b.backward(w.residual[i], a, w);
      hooks.afterWeights(b.unit, Pass.BACKWARD);
      hooks.afterGradients(b.unit);
    }
    if (stage.embedding()) {
      hooks.beforeWeights(embeddingUnit, Pass.BACKWARD);
      // each row of the table gets the sum of its tokens' gradients added once, after the tied head's contribution
      if (w.split != null) {  // sequence parallel: every rank's rows of d(x0) gathered, then as below
        Tensor all = w.split.gather(w.dres);
        if (positionEmbedding.g() != null) Ops.embeddingBackward(w.positions, all, positionEmbedding.g());
        Ops.mul(all, w.vocabMask, all);
        Ops.embeddingBackward(w.localIds, all, tokenEmbedding.g());
      } else if (tp.split()) {  // this rank's rows only: the other ranks' tokens add zeros to its first row
        Ops.mul(w.dres, w.vocabMask, w.scratch);
        Ops.embeddingBackward(w.localIds, w.scratch, tokenEmbedding.g());
      } else {
        Ops.embeddingBackward(w.ids, w.dres, tokenEmbedding.g());
      }
      if (w.split == null && positionEmbedding.g() != null) Ops.embeddingBackward(w.positions, w.dres, positionEmbedding.g());
      hooks.afterWeights(embeddingUnit, Pass.BACKWARD);
      hooks.afterGradients(embeddingUnit);
    }
    backwardDone = true;
  }

  /**
   * The last forward's output, (B*T, C) hidden states (sequence parallel: this rank's rows, {@link #boundaryRows}), of
   * a stage without the head (owned by the model).
   */
  public Tensor output() {
    if (stage.head()) throw new IllegalStateException("stage " + stage + " ends with the head: its output is the loss");
    if (ws == null || validTargets < 0) throw new IllegalStateException("no forward has run");
    return ws.residual[blocks.length];
  }

  /**
   * The gradient of the last backward with respect to the stage's input hidden states, (B*T, C) (sequence parallel:
   * this rank's rows, {@link #boundaryRows}), for a stage without the embeddings (owned by the model; valid until the
   * next forward).
   */
  public Tensor inputGradient() {
    if (stage.embedding()) throw new IllegalStateException("stage " + stage + " starts with the embeddings: its input is token ids");
    if (ws == null || !backwardDone) throw new IllegalStateException("no backward has run");
    return ws.dres;
  }

  /** Per-token losses of the last forward, (B x T) row-major: {@code -log p(target)} (0 where ignored). */
  public float[] tokenLosses() {
    if (ws == null || ws.losses == null) throw new IllegalStateException("no forward has run");
    return ws.losses.toFloatArray();
  }

  /**
   * Logits of the last forward as a host array (B x T x V, row-major). Under tensor parallelism each rank holds only its
   * vocabulary columns: this is then a collective (every rank calls it) that puts the whole logits together on every
   * rank, exactly (a diagnostic: training never forms them).
   */
  public float[] lastLogits() {
    if (ws == null || ws.logits == null) throw new IllegalStateException("no forward has run");
    if (validTargets < 0) {
      // after backward the buffer holds gradients
      throw new IllegalStateException("the logits buffer was overwritten by backward(); call forward() again");
    }
    float[] mine;
    try (Tensor c = ws.logits.contiguous(); Tensor f = c.dtype() == DType.F32 ? null : Ops.convert(c, DType.F32)) {
      mine = (f == null ? c : f).toFloatArray();
    }
    if (!tp.split()) return mine;
    int n = ws.rows, v = cfg.vocabSize(), lo = tp.vocabStart(cfg), w = tp.vocabEnd(cfg) - lo;
    float[] all = new float[n * v];  // this rank's columns at their place, zeros elsewhere, summed over the ranks
    for (int i = 0; i < n; i++) System.arraycopy(mine, i * w, all, i * v + lo, w);
    try (Tensor t = Tensor.of(all, n, v)) {
      tpSum.allReduceSum(t);
      return t.toFloatArray();
    }
  }

  // ------------------------------------------------------------------ inference

  /**
   * A key/value cache for {@code batch} sequences of up to {@code maxLen} tokens: in memory, or paged as {@link
   * #setKvCachePaging} says.
   */
  public KvCache newCache(int batch, int maxLen) {
    if (tp.split()) throw new IllegalStateException("cached decoding needs one process; this is tensor-parallel rank " + tp);
    if (maxLen > cfg.maxSeqLen()) {
      throw new IllegalArgumentException("cache length " + maxLen + " exceeds the model's context " + cfg.maxSeqLen());
    }
    return new KvCache(cfg, stage, device, dt, batch, maxLen, kvPaging);
  }

  /**
   * Runs {@code tokens} (B x n, row-major; B must be the cache's batch) at positions
   * {@code cache.length() .. cache.length() + n} through the model, appends their keys and values to the
   * cache, and returns the logits of the last position of each sequence as a host array (B x V, FP32).
   */
  public float[] forwardCached(KvCache cache, int[] tokens, int batch, int n) {
    Tensor logits = forwardCachedLogits(cache, tokens, batch, n);
    KvCache.Step s = cache.step(n, () -> {
      throw new IllegalStateException("the step of " + n + " tokens was just made");
    });
    if (!device.isCuda()) return logits.toFloatArray();
    Tensor host = s.logitsHost();  // made by the first step of this shape that wants host logits
    host.copyFrom(logits);  // device -> pinned host, no allocation per step
    return host.toFloatArray();
  }

  /**
   * As {@link #forwardCached}, but returns the logits where they were computed: a (B, V) FP32 tensor on the
   * model's device, owned by the cache and overwritten by its next step of the same shape (do not close it). A
   * caller that samples on the device ({@link dev.athanor.infer.Sampler}) copies only the chosen ids back.
   */
  public Tensor forwardCachedLogits(KvCache cache, int[] tokens, int batch, int n) {
    if (!stage.isWhole(cfg)) throw new IllegalStateException("cached decoding needs the whole model, this is stage " + stage);
    if (batch != cache.batch()) throw new IllegalArgumentException("batch " + batch + " != cache batch " + cache.batch());
    checkTokens("tokens", tokens, batch, n, false);
    int pos = cache.length();
    if (pos + n > cache.capacity()) {
      throw new IllegalArgumentException("sequence of " + (pos + n) + " tokens exceeds the cache capacity "
          + cache.capacity() + " (model context " + cfg.maxSeqLen() + ")");
    }
    bind();
    KvCache.Step s = cache.step(n, () -> new KvCache.Step(cfg, device, dt, batch, n));
    s.ids.copyFrom(tokens);
    if (s.posIds != null) {
      int[] posIds = new int[batch * n];
      for (int i = 0; i < posIds.length; i++) posIds[i] = pos + i % n;
      s.posIds.copyFrom(posIds);
    }
    hooks.beforeWeights(embeddingUnit, Pass.DECODE);
    Ops.embedding(s.ids, tokenEmbedding.w(), s.x);
    if (positionEmbedding.w() != null) {
      Ops.embedding(s.posIds, positionEmbedding.w(), s.tmp);
      Ops.add(s.x, s.tmp, s.x);
    }
    hooks.afterWeights(embeddingUnit, Pass.DECODE);
    for (Block b : blocks) {
      hooks.beforeWeights(b.unit, Pass.DECODE);
      b.forward(s.x, s.acts, s.x, s.tmp, cache);
      hooks.afterWeights(b.unit, Pass.DECODE);
    }
    beforeHead(Pass.DECODE);
    finalNorm.forward(s.x, s.acts.n1, s.stats, s.stats2);
    Ops.gemm(s.lastRows, false, headWeight.w(), true, 1f, 0f, null, s.logits);  // (B, V) = x_last @ W^T
    afterHead(Pass.DECODE);
    cache.advance(n);
    return s.logits;
  }

  // ------------------------------------------------------------------ helpers

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
    if (tokens != null && (long) batch * seq < tp.size()) {
      throw new IllegalArgumentException("sequence parallelism cuts batch " + batch + " x seq " + seq + " = " + (long) batch * seq
          + " token rows over " + tp.size() + " tensor-parallel ranks: each needs at least one");
    }
    releaseWorkspace();
    ws = new Workspace(cfg, tp, stage, device, dt, batch, seq, recompute, offloadActivations, activationSets, tokens);
    ws.select(activationSet);
    return ws;
  }

  /** Frees the activation buffers (they are reallocated by the next forward). */
  public void releaseWorkspace() {
    if (ws != null) {
      ws.close();
      ws = null;
    }
    Arrays.fill(valid, -1);
    validTargets = -1;
    backwardDone = false;
  }

  @Override
  public void close() {
    releaseWorkspace();
    store.close();
  }
}
