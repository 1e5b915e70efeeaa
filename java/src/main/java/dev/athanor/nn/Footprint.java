package dev.athanor.nn;

import dev.athanor.memory.InsufficientMemoryException;
import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.SystemMemory;
import dev.athanor.memory.Tier;
import dev.athanor.params.ParamSpec;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.ExecutionContext;
import dev.athanor.tensor.DType;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;
import java.util.function.LongSupplier;

/**
 * The memory one job on a whole model needs, per component and tier, known before anything is allocated: so that a
 * model that cannot fit is refused at once instead of dying halfway (the kernel's out-of-memory killer gives no
 * message). The sizes come from the code that allocates: the parameter store's layout
 * ({@link ParameterStore#layoutNumel}, one block's parameters times the layers, so any depth costs the same),
 * the workspace's, the blocks' saved activations' and the KV cache's size methods next to their constructors; the
 * tests check them against what allocating reserves. Kernel scratch on CUDA is an upper estimate from the kernels'
 * documented needs. Sums that overflow a long saturate at {@link Long#MAX_VALUE} (more than any machine has).
 *
 * <p>{@link #shortfalls} compares a footprint with each tier's budget (less what is in use), the host memory the
 * machine has available ({@link SystemMemory#hostAvailableBytes()}) and the free memory of the CUDA device.
 *
 * @param config the model, or null for memory that belongs to no model ({@link #of})
 * @param device where it runs
 * @param computeDtype the model's compute dtype (null without a model)
 * @param parts bytes per component and tier (components may appear in several tiers)
 */
public record Footprint(ModelConfig config, Device device, DType computeDtype, List<Part> parts) {

  /** What the bytes are for. */
  public enum Component {
    WEIGHTS("weights", false),
    GRADIENTS("gradients", false),
    OPTIMIZER("AdamW state", false),
    ACTIVATIONS("activations", true),
    WORKSPACE("workspace", true),
    SCRATCH("kernel scratch", true),
    KV_CACHE("KV cache", true),
    BUFFERS("buffers", true),
    LOADING("weights read from the files", false),
    CHECKPOINT("checkpoint buffers", false);

    private final String label;
    private final boolean perToken;

    Component(String label, boolean perToken) {
      this.label = label;
      this.perToken = perToken;
    }

    /** How messages name it ("AdamW state"). */
    public String label() {
      return label;
    }

    /** Whether it grows with the tokens processed at once (batch x sequence), not with the model alone. */
    public boolean perToken() {
      return perToken;
    }
  }

  /** {@code bytes} of {@code component} in {@code tier}. */
  public record Part(Component component, Tier tier, long bytes) {
    public Part {
      Objects.requireNonNull(component, "component");
      Objects.requireNonNull(tier, "tier");
      if (bytes < 0) throw new IllegalArgumentException("bytes must be >= 0, got " + bytes);
    }
  }

  /** What limits the memory a footprint may use: a tier's budget, or what the machine has. */
  public enum Limit {
    BUDGET, MACHINE
  }

  /**
   * A footprint does not fit: {@code needed} bytes of {@code tiers} against {@code available}.
   *
   * @param tiers the tiers the need is summed over: one tier against its budget; HOST and HOST_PINNED together
   *     against the machine's host memory; DEVICE against the device's free memory
   * @param needed the bytes needed there
   * @param available the bytes there: the budget less what is in use, or the machine's available memory
   * @param limit which of the two
   * @param budget the tier's budget, for {@link Limit#BUDGET} (else -1)
   */
  public record Shortfall(Set<Tier> tiers, long needed, long available, Limit limit, long budget) {
    public Shortfall {
      tiers = Set.copyOf(tiers);
    }

    /** The short tier in words: "HOST tier", or "host memory (HOST and HOST_PINNED)" when tiers share a limit. */
    public String tierName() {
      return tiers.size() == 1 ? tiers.iterator().next() + " tier"
          : "host memory (" + String.join(" and ", tiers.stream().map(Enum::name).sorted().toList()) + ")";
    }
  }

  public Footprint {
    Objects.requireNonNull(device, "device");
    parts = List.copyOf(parts);
  }

  /** Memory that belongs to no model, e.g. a benchmark's {@link Component#BUFFERS}. */
  public static Footprint of(Device device, List<Part> parts) {
    return new Footprint(null, device, null, parts);
  }

  // ------------------------------------------------------------------ jobs

  /** The weights alone: FP32 masters and, unless the compute dtype is F32 (then they are one buffer), the compute copy. */
  public static Footprint weights(ModelConfig c, Device device, DType dt) {
    Tier tier = tier(device);
    long numel = saturate(() -> layoutNumel(c));
    long bytes = add(role(tier, numel, Role.MASTER.dtype(dt)), dt == DType.F32 ? 0 : role(tier, numel, Role.WEIGHT.dtype(dt)));
    return new Footprint(c, device, dt, List.of(new Part(Component.WEIGHTS, tier, bytes)));
  }

  /**
   * Training steps of {@code batch} sequences of {@code seq} tokens ({@code Trainer}): weights, gradients (the
   * micro-batch's, plus the step's sum when {@code accum > 1}), AdamW's two moments, the activations (every block's,
   * or one block's when recomputing, plus the residual streams) and the workspace; on CUDA, kernel scratch.
   */
  public static Footprint training(ModelConfig c, Device device, DType dt, int batch, int seq, int accum, boolean recompute) {
    Tier tier = tier(device);
    Stage whole = Stage.whole(c);
    long numel = saturate(() -> layoutNumel(c));
    long grad = role(tier, numel, Role.GRAD.dtype(dt));
    return weights(c, device, dt)
        .plus(Component.GRADIENTS, tier, accum > 1 ? add(grad, grad) : grad)
        .plus(Component.OPTIMIZER, tier, add(role(tier, numel, Role.ADAM_M.dtype(dt)), role(tier, numel, Role.ADAM_V.dtype(dt))))
        .plus(Component.ACTIVATIONS, tier, saturate(() -> Workspace.activationBytes(c, whole, device, dt, batch, seq, recompute)))
        .plus(Component.WORKSPACE, tier, saturate(() -> Workspace.bufferBytes(c, whole, device, dt, batch, seq)))
        .plus(Component.SCRATCH, tier, device.isCuda() ? saturate(() -> trainingScratch(c, batch, seq)) : 0);
  }

  /**
   * Bytes of the activations a training micro-batch of {@code batch × seq} tokens keeps for the backward of {@code
   * stage} (every block's, or one block's when recomputing, plus the residual streams), for planners that size one
   * pipeline stage.
   */
  public static long stageActivationBytes(ModelConfig c, Stage stage, Device device, DType dt, int batch, int seq,
      boolean recompute) {
    return saturate(() -> Workspace.activationBytes(c, stage, device, dt, batch, seq, recompute));
  }

  /**
   * Bytes of the activations {@code sets} micro-batches in flight keep on {@code stage} ({@link
   * Transformer#setActivationSets}: a pipeline stage's; with {@code recompute} each set is its residual streams and one
   * block's activations are shared).
   */
  public static long stageActivationBytes(ModelConfig c, Stage stage, Device device, DType dt, int batch, int seq,
      boolean recompute, int sets) {
    if (sets < 1) throw new IllegalArgumentException("activation sets " + sets + " must be >= 1");
    return saturate(() -> Workspace.activationBytes(c, stage, device, dt, batch, seq, recompute, sets));
  }

  /**
   * {@link #stageActivationBytes(ModelConfig, Stage, Device, DType, int, int, boolean, int)} on the busiest of {@code tp}
   * tensor-parallel ranks (the blocks' split buffers counted whole, an upper bound), with or without sequence
   * parallelism ({@code Transformer#setSequenceParallel}: the residual streams and the blocks' norm outputs, statistics
   * and attention residual hold 1/tp of the token rows, the first ranks' one more).
   */
  public static long stageActivationBytes(ModelConfig c, Stage stage, Device device, DType dt, int batch, int seq,
      boolean recompute, int sets, int tp, boolean sequenceParallel) {
    if (sets < 1) throw new IllegalArgumentException("activation sets " + sets + " must be >= 1");
    return saturate(() -> Workspace.activationBytes(c, stage, device, dt, batch, seq, recompute, sets,
        new TensorParallel(tp, 0), sequenceParallel));
  }

  /**
   * Bytes of one block's saved activations for a micro-batch of {@code batch × seq} tokens in one process: what
   * offloading them ({@link Transformer#setOffloadedActivations}) writes to DISK after the block's forward and reads
   * back before its backward.
   */
  public static long blockActivationBytes(ModelConfig c, Device device, DType dt, int batch, int seq) {
    return saturate(() -> BlockActs.bytes(c, device, dt, batch, seq));
  }

  /**
   * Bytes of the file one block's offloaded activations take on DISK: each buffer at a multiple of {@link
   * dev.athanor.memory.Storage#PAGE} bytes, so that the transfers of page-aligned host buffers can bypass the page cache.
   */
  public static long blockActivationFileBytes(ModelConfig c, Device device, DType dt, int batch, int seq) {
    return saturate(() -> BlockActs.fileBytes(c, device, dt, batch, seq, dev.athanor.memory.Storage.PAGE));
  }

  /**
   * The blocks of {@code stage} whose activations go to DISK when offloaded: all but the last {@link
   * Transformer#activationRing()}, whose ring slots are not refilled before their backward.
   */
  public static int offloadedBlocks(Stage stage) {
    return stage.blocks() - Workspace.ringSize(stage);
  }

  /**
   * This training footprint (on the CPU, of the whole model, activations kept) with the blocks' saved activations
   * offloaded ({@link Transformer#setOffloadedActivations}): HOST keeps the residual streams and a ring of {@link
   * Transformer#activationRing()} blocks' activations, which are also the transfers' buffers (no other staging); DISK
   * holds one file per offloaded block ({@link #blockActivationFileBytes}).
   */
  public Footprint withActivationsOnDisk(int batch, int seq) {
    Objects.requireNonNull(config, "offload needs a model");
    if (device.isCuda()) throw new IllegalArgumentException("activations on DISK need the CPU backend, not " + device);
    Stage whole = Stage.whole(config);
    long kept = saturate(() -> Workspace.activationBytes(config, whole, device, computeDtype, batch, seq, false));
    long ring = saturate(() -> Workspace.activationBytes(config, whole, device, computeDtype, batch, seq, false, true, 1,
        TensorParallel.NONE, false));
    long files = saturate(() -> Math.multiplyExact((long) offloadedBlocks(whole),
        BlockActs.fileBytes(config, device, computeDtype, batch, seq, dev.athanor.memory.Storage.PAGE)));
    return move(Component.ACTIVATIONS, kept - ring, files, "the activations of " + offloadedBlocks(whole) + " blocks");
  }

  /** Bytes of the work buffers (gradient streams, logits, scratch) a training step of {@code stage} allocates. */
  public static long stageBufferBytes(ModelConfig c, Stage stage, Device device, DType dt, int batch, int seq) {
    return saturate(() -> Workspace.bufferBytes(c, stage, device, dt, batch, seq));
  }

  /**
   * {@link #stageBufferBytes(ModelConfig, Stage, Device, DType, int, int)} on the busiest of {@code tp} tensor-parallel
   * ranks (the last, whose vocabulary part is the largest): its logits are its part of the vocabulary.
   */
  public static long stageBufferBytes(ModelConfig c, Stage stage, Device device, DType dt, int batch, int seq, int tp) {
    return stageBufferBytes(c, stage, device, dt, batch, seq, tp, false);
  }

  /**
   * The same with or without sequence parallelism (the token-split gradient scratch and final norm of rank 0's rows,
   * the most, and the shared full-rows buffer).
   */
  public static long stageBufferBytes(ModelConfig c, Stage stage, Device device, DType dt, int batch, int seq, int tp,
      boolean sequenceParallel) {
    return saturate(() -> Workspace.bufferBytes(c, stage, device, dt, batch, seq, new TensorParallel(tp, tp - 1),
        sequenceParallel && tp > 1));
  }

  /**
   * A forward pass over {@code batch} sequences of {@code seq} tokens without training (e.g. scoring): the weights, and
   * the workspace a forward allocates (every block's activations and the gradient buffers, as for training).
   */
  public static Footprint forward(ModelConfig c, Device device, DType dt, int batch, int seq) {
    Tier tier = tier(device);
    Stage whole = Stage.whole(c);
    return weights(c, device, dt)
        .plus(Component.ACTIVATIONS, tier, saturate(() -> Workspace.activationBytes(c, whole, device, dt, batch, seq, false)))
        .plus(Component.WORKSPACE, tier, saturate(() -> Workspace.bufferBytes(c, whole, device, dt, batch, seq)));
  }

  /**
   * Cached decoding of {@code batch} sequences: a KV cache of {@code capacity} tokens, the step buffers of the
   * {@code promptLen}-token prefill and of one-token steps (on CUDA with a pinned copy of the logits each, as {@code
   * Transformer.forwardCached} makes it on first use; the generator never makes it, so for it this counts {@code 2 × B ×
   * V × 4} pinned bytes more than it uses), and the sampler's per-row uniforms and ids ({@code dev.athanor.infer.Sampler}).
   */
  public static Footprint decoding(ModelConfig c, Device device, DType dt, int batch, int promptLen, int capacity) {
    Tier tier = tier(device);
    int shapes = promptLen == 1 ? 1 : 2;
    return weights(c, device, dt)
        .plus(Component.KV_CACHE, tier, saturate(() -> KvCache.bytes(c, Stage.whole(c), device, dt, batch, capacity)))
        .plus(Component.WORKSPACE, tier, saturate(() -> Math.addExact(KvCache.Step.bytes(c, device, dt, batch, promptLen),
            promptLen == 1 ? 0 : KvCache.Step.bytes(c, device, dt, batch, 1))))
        .plus(Component.WORKSPACE, Tier.HOST_PINNED, saturate(() -> Math.multiplyExact(shapes,
            KvCache.Step.pinnedBytes(c, device, batch))))
        .plus(Component.BUFFERS, tier, new BufferSizes(tier).add(DType.F32, batch).add(DType.I32, batch).total());
  }

  /** The layout of the KV cache {@link #decoding} counts: every layer of the model, {@code batch} x {@code capacity} tokens. */
  public static KvCache.Layout kvCacheLayout(ModelConfig c, DType dt, int batch, int capacity) {
    return new KvCache.Layout(0, c.layers(), batch, capacity, c.kvHeads(), c.headDim(), dt);
  }

  /**
   * This decoding footprint (CPU) with its KV cache on DISK ({@code dev.athanor.offload.KvCacheOnDisk}): {@code
   * windowBytes} of host windows instead of the whole cache in HOST, and {@code fileBytes} of files on DISK.
   */
  public Footprint withKvCacheOnDisk(long windowBytes, long fileBytes) {
    if (device.isCuda()) throw new IllegalArgumentException("a KV cache on DISK needs the CPU backend, not " + device);
    long kv = bytes(Component.KV_CACHE, Set.of(Tier.HOST));
    if (kv == 0) throw new IllegalArgumentException("this footprint has no KV cache in HOST memory");
    return move(Component.KV_CACHE, Tier.HOST, kv, Tier.DISK, fileBytes, "the KV cache")
        .plus(Component.KV_CACHE, Tier.HOST, windowBytes);
  }

  /**
   * This footprint plus loading the weights from a Hugging Face directory: every parameter read into an FP32 host
   * tensor before the model is built (and, on CUDA, one at a time copied to the device).
   */
  public Footprint withLoading() {
    Objects.requireNonNull(config, "loading needs a model");
    long host = saturate(() -> Math.multiplyExact(config.parameterCount(), (long) DType.F32.byteSize()));
    Footprint f = plus(Component.LOADING, Tier.HOST, host);
    if (!device.isCuda()) return f;
    return f.plus(Component.LOADING, Tier.DEVICE, saturate(() -> {
      long largest = 0;
      for (List<ParamSpec> specs : List.of(config.embeddingSpecs(), config.blockSpecs(0), config.headSpecs())) {
        for (ParamSpec s : specs) largest = Math.max(largest, s.numel());
      }
      return MemoryManager.reservedSize(Tier.DEVICE, Math.multiplyExact(largest, (long) DType.F32.byteSize()));
    }));
  }

  /**
   * This footprint with the checkpoint snapshot of {@code onDisk} of its three parts (FP32 weights, AdamW's two
   * moments) on DISK: a snapshot keeps a role where the role lives, copying a DISK role through host memory one tensor
   * at a time. Replaces {@link #withCheckpoints()}'s HOST part.
   */
  public Footprint withCheckpointPartsOnDisk(int onDisk) {
    Objects.requireNonNull(config, "checkpoints need a model");
    if (onDisk < 0 || onDisk > 3) throw new IllegalArgumentException("onDisk must be 0 to 3, got " + onDisk);
    List<Part> p = new ArrayList<>();
    boolean had = false;
    for (Part part : parts) {
      if (part.component() == Component.CHECKPOINT && part.tier() == Tier.HOST) had = true;
      else p.add(part);
    }
    if (!had) return this;
    long each = saturate(() -> Math.multiplyExact(config.parameterCount(), (long) DType.F32.byteSize()));
    long host = saturate(() -> Math.multiplyExact(3L - onDisk, each));
    if (onDisk > 0) host = add(host, Math.multiplyExact(largestTensor(config), (long) DType.F32.byteSize()));
    return new Footprint(config, device, computeDtype, p).plus(Component.CHECKPOINT, Tier.HOST, host)
        .plus(Component.CHECKPOINT, Tier.DISK, saturate(() -> Math.multiplyExact((long) onDisk, each)));
  }

  private static long largestTensor(ModelConfig config) {
    long largest = 0;
    for (List<ParamSpec> specs : List.of(config.embeddingSpecs(), config.blockSpecs(0), config.headSpecs())) {
      for (ParamSpec s : specs) largest = Math.max(largest, s.numel());
    }
    return largest;
  }

  /**
   * This footprint with its {@link Component#LOADING} in HOST memory cut to the largest tensor: the weights are read
   * one tensor at a time ({@code HfModelDir.loadInto}, for weights that live on DISK).
   */
  public Footprint withStreamedLoading() {
    Objects.requireNonNull(config, "loading needs a model");
    long one = Math.multiplyExact(largestTensor(config), (long) DType.F32.byteSize());
    List<Part> p = new ArrayList<>();
    boolean had = false;
    for (Part part : parts) {
      if (part.component() == Component.LOADING && part.tier() == Tier.HOST) {
        had = true;
      } else {
        p.add(part);
      }
    }
    Footprint f = new Footprint(config, device, computeDtype, p);
    return had ? f.plus(Component.LOADING, Tier.HOST, one) : f;
  }

  /** This footprint plus the host snapshot a checkpoint is written from: FP32 weights and both AdamW moments. */
  public Footprint withCheckpoints() {
    Objects.requireNonNull(config, "checkpoints need a model");
    return plus(Component.CHECKPOINT, Tier.HOST,
        saturate(() -> Math.multiplyExact(config.parameterCount(), 3L * DType.F32.byteSize())));
  }

  /**
   * This training footprint with {@code roles} (AdamW moments) kept on the DISK tier instead of in HOST memory, plus
   * {@code stagingBytes} of HOST memory for the buffers they are streamed through (counted as AdamW state). Only on
   * the CPU, where the moments are in HOST memory.
   */
  public Footprint withOptimizerStateOnDisk(Set<Role> roles, long stagingBytes) {
    for (Role r : roles) {
      if (r != Role.ADAM_M && r != Role.ADAM_V) throw new IllegalArgumentException("only AdamW's moments can be on DISK here, not " + r);
    }
    return withStateOnDisk(roles, stagingBytes, 0, 0);
  }

  /**
   * This training footprint (on the CPU) with {@code roles} kept on the DISK tier instead of in HOST memory:
   * {@link Role#MASTER} moves the weights (F32 compute only, where the masters are the compute weights),
   * {@link Role#GRAD} the gradients (the micro-batch's and, with accumulation, the step's sum: one step gradient on
   * DISK), {@link Role#ADAM_M} and {@link Role#ADAM_V} AdamW's moments. HOST memory added back: {@code stagingBytes}
   * for the optimizer's staging (counted as AdamW state), {@code weightWindowBytes} for the weights' windows (as
   * weights) and {@code gradWindowBytes} for the gradients' windows and the norm's buffers (as gradients).
   */
  public Footprint withStateOnDisk(Set<Role> roles, long stagingBytes, long weightWindowBytes, long gradWindowBytes) {
    Objects.requireNonNull(config, "offload needs a model");
    if (device.isCuda()) throw new IllegalArgumentException("offload on " + device + " is not supported yet: only on the CPU");
    if (stagingBytes < 0 || weightWindowBytes < 0 || gradWindowBytes < 0) {
      throw new IllegalArgumentException("host bytes must be >= 0, got staging " + stagingBytes + ", weight windows "
          + weightWindowBytes + ", gradient windows " + gradWindowBytes);
    }
    if (roles.isEmpty()) return this;
    long numel = saturate(() -> layoutNumel(config));
    Footprint f = this;
    for (Role r : new java.util.TreeSet<>(roles)) {
      switch (r) {
        case MASTER -> {
          if (computeDtype != DType.F32) {
            throw new IllegalArgumentException("weights can be on DISK only when computing in F32, not " + computeDtype);
          }
          f = f.move(Component.WEIGHTS, role(Tier.HOST, numel, DType.F32), role(Tier.HOST, numel, DType.F32), r);
        }
        case GRAD -> f = f.move(Component.GRADIENTS, f.bytes(Component.GRADIENTS, Set.of(Tier.HOST)),
            role(Tier.HOST, numel, DType.F32), r);
        case ADAM_M, ADAM_V -> f = f.move(Component.OPTIMIZER, role(Tier.HOST, numel, DType.F32), role(Tier.HOST, numel, DType.F32), r);
        default -> throw new IllegalArgumentException(r + " cannot be on DISK");
      }
    }
    return f.plus(Component.OPTIMIZER, Tier.HOST, stagingBytes).plus(Component.WEIGHTS, Tier.HOST, weightWindowBytes)
        .plus(Component.GRADIENTS, Tier.HOST, gradWindowBytes);
  }

  /**
   * This footprint of one ZeRO rank (on the CPU; its {@link Component#OPTIMIZER} in HOST memory is its shard of AdamW's
   * two moments, half each) with the shard of {@code roles} ({@link Role#ADAM_M}, {@link Role#ADAM_V}) kept on the DISK
   * tier instead, plus {@code stagingBytes} of HOST memory for the buffers they are streamed through (counted as AdamW
   * state).
   */
  public Footprint withShardMomentsOnDisk(Set<Role> roles, long stagingBytes) {
    if (device.isCuda()) throw new IllegalArgumentException("offload on " + device + " is not supported yet: only on the CPU");
    if (stagingBytes < 0) throw new IllegalArgumentException("host bytes must be >= 0, got staging " + stagingBytes);
    if (roles.isEmpty()) return this;
    long each = bytes(Component.OPTIMIZER, Set.of(Tier.HOST)) / 2;
    Footprint f = this;
    for (Role r : new java.util.TreeSet<>(roles)) {
      if (r != Role.ADAM_M && r != Role.ADAM_V) {
        throw new IllegalArgumentException("only AdamW's moments of a shard can be on DISK here, not " + r);
      }
      f = f.move(Component.OPTIMIZER, each, each, r);
    }
    return f.plus(Component.OPTIMIZER, Tier.HOST, stagingBytes);
  }

  /**
   * This footprint of one ZeRO 3 rank (on the CPU; its shard of the masters in {@link Component#WEIGHTS} and of the
   * step's gradient in {@link Component#GRADIENTS}, HOST) with its shard of {@code role} ({@link Role#MASTER} or {@link
   * Role#GRAD}, {@code shardBytes}) kept on the DISK tier instead, plus {@code bufferBytes} of HOST memory (as the same
   * component) for the buffers its parts go through (a unit's part, a norm chunk).
   */
  public Footprint withShardRoleOnDisk(Role role, long shardBytes, long bufferBytes) {
    if (device.isCuda()) throw new IllegalArgumentException("offload on " + device + " is not supported yet: only on the CPU");
    if (shardBytes < 0 || bufferBytes < 0) {
      throw new IllegalArgumentException("bytes must be >= 0, got shard " + shardBytes + ", buffers " + bufferBytes);
    }
    Component c = switch (role) {
      case MASTER -> Component.WEIGHTS;
      case GRAD -> Component.GRADIENTS;
      default -> throw new IllegalArgumentException("only the masters' or the gradient's shard moves here, not " + role);
    };
    return move(c, shardBytes, shardBytes, role).plus(c, Tier.HOST, bufferBytes);
  }

  /** {@code hostBytes} of {@code component} taken out of HOST and {@code diskBytes} of it put on DISK. */
  private Footprint move(Component component, long hostBytes, long diskBytes, Object what) {
    return move(component, Tier.HOST, hostBytes, Tier.DISK, diskBytes, what);
  }

  /**
   * This footprint with {@code fromBytes} of {@code component} taken out of tier {@code from} and {@code toBytes} of it
   * put in tier {@code to} (e.g. the optimizer's state moved from a device's memory to pinned host memory). Throws when
   * the footprint holds less of the component in {@code from}.
   */
  public Footprint move(Component component, Tier from, long fromBytes, Tier to, long toBytes) {
    return move(component, from, fromBytes, to, toBytes, component.label());
  }

  private Footprint move(Component component, Tier from, long fromBytes, Tier to, long toBytes, Object what) {
    List<Part> p = new ArrayList<>();
    long left = fromBytes;
    for (Part part : parts) {
      if (left > 0 && part.component() == component && part.tier() == from) {
        long take = Math.min(left, part.bytes());
        left -= take;
        if (part.bytes() > take) p.add(new Part(component, from, part.bytes() - take));
      } else {
        p.add(part);
      }
    }
    if (left > 0) {
      throw new IllegalArgumentException("this footprint holds less " + component.label() + " in " + from + " memory than "
          + what + " takes");
    }
    return new Footprint(config, device, computeDtype, p).plus(component, to, toBytes);
  }

  /** This footprint with {@code bytes} more of {@code component} in {@code tier} (nothing when 0). */
  public Footprint plus(Component component, Tier tier, long bytes) {
    if (bytes == 0) return this;
    List<Part> p = new ArrayList<>(parts);
    p.add(new Part(component, tier, bytes));
    return new Footprint(config, device, computeDtype, p);
  }

  // ------------------------------------------------------------------ sums

  /** Bytes in {@code tier}. */
  public long bytes(Tier tier) {
    long n = 0;
    for (Part p : parts) if (p.tier() == tier) n = add(n, p.bytes());
    return n;
  }

  /** Bytes of {@code component} in any of {@code tiers}. */
  public long bytes(Component component, Set<Tier> tiers) {
    long n = 0;
    for (Part p : parts) if (p.component() == component && tiers.contains(p.tier())) n = add(n, p.bytes());
    return n;
  }

  /** Bytes in any of {@code tiers}. */
  public long bytes(Set<Tier> tiers) {
    long n = 0;
    for (Tier t : tiers) n = add(n, bytes(t));
    return n;
  }

  /** Bytes in every tier. */
  public long total() {
    return bytes(EnumSet.allOf(Tier.class));
  }

  // ------------------------------------------------------------------ fitting

  /**
   * Where this footprint does not fit: each tier against its budget less what is in use there (for DEVICE: on this
   * footprint's device; cached blocks count as free, since the cache is emptied under pressure), HOST and HOST_PINNED
   * together against the host memory the machine has available, and DEVICE against the device's free memory (plus
   * what this process caches there). Empty when it fits.
   */
  public List<Shortfall> shortfalls(MemoryManager mm) {
    List<Shortfall> out = new ArrayList<>();
    for (Tier t : Tier.values()) {
      long need = bytes(t), budget = mm.budgetBytes(t);
      if (need == 0 || budget == MemoryManager.UNLIMITED) continue;
      long inUse = switch (t) {
        case DEVICE -> mm.reservedBytes(device) - mm.cachedBytes(device);
        case HOST_PINNED -> mm.reservedBytes(t) - mm.cachedBytes(t);
        default -> mm.liveBytes(t);
      };
      long left = Math.max(0, budget - inUse);
      if (need > left) out.add(new Shortfall(Set.of(t), need, left, Limit.BUDGET, budget));
    }
    Set<Tier> host = EnumSet.of(Tier.HOST, Tier.HOST_PINNED);
    long hostNeed = bytes(host), hostAvailable = SystemMemory.hostAvailableBytes();
    if (hostNeed > 0 && hostAvailable >= 0 && hostNeed > hostAvailable) {
      host.removeIf(t -> bytes(t) == 0);
      out.add(new Shortfall(host, hostNeed, hostAvailable, Limit.MACHINE, -1));
    }
    long deviceNeed = bytes(Tier.DEVICE), deviceFree = SystemMemory.deviceFreeBytes(device);
    if (deviceNeed > 0 && deviceFree >= 0) {
      long free = add(deviceFree, mm.cachedBytes(device));
      if (deviceNeed > free) out.add(new Shortfall(Set.of(Tier.DEVICE), deviceNeed, free, Limit.MACHINE, -1));
    }
    return out;
  }

  /** The shortfall that binds hardest (the least available per byte needed), or null when it fits. */
  public Shortfall worstShortfall(MemoryManager mm) {
    Shortfall worst = null;
    for (Shortfall s : shortfalls(mm)) {
      if (worst == null || (double) s.available() / s.needed() < (double) worst.available() / worst.needed()) worst = s;
    }
    return worst;
  }

  /**
   * Throws {@link InsufficientMemoryException} when this footprint does not fit ({@link #worstShortfall}), with the
   * message of {@link #describe}.
   */
  public void require(MemoryManager mm) {
    Shortfall s = worstShortfall(mm);
    if (s != null) throw new InsufficientMemoryException("not enough memory: " + describe(s));
  }

  /**
   * One sentence for a shortfall: what is needed, per component, and what is there, e.g. "needs 37.5 GiB of host
   * memory (weights 9.3 GiB, ...) but the HOST budget allows 20.1 GiB".
   */
  public String describe(Shortfall s) {
    List<String> items = new ArrayList<>();
    for (Component c : Component.values()) {
      long b = bytes(c, s.tiers());
      if (b > 0) items.add(c.label() + " " + size(b));
    }
    String memory = s.tiers().contains(Tier.DEVICE) ? "memory of " + device
        : s.tiers().equals(Set.of(Tier.HOST_PINNED)) ? "pinned host memory" : "host memory";
    String there = switch (s.limit()) {
      case BUDGET -> "the " + s.tiers().iterator().next() + " budget " + (s.available() == s.budget()
          ? "is " + size(s.budget()) : "of " + size(s.budget()) + " has " + size(s.available()) + " left");
      case MACHINE -> s.tiers().contains(Tier.DEVICE) ? device + " has " + size(s.available()) + " free"
          : "the machine has " + size(s.available()) + " available";
    };
    return "needs " + size(s.needed()) + " of " + memory + " (" + String.join(", ", items) + ") but " + there;
  }

  /** "37.5 GiB"; a saturated sum reads "more than 8 EiB". */
  public static String size(long bytes) {
    return bytes == Long.MAX_VALUE ? "more than 8 EiB" : MemoryManager.formatSize(bytes);
  }

  // ------------------------------------------------------------------ arithmetic

  /** Elements of the whole model's flat parameter layout: one block's times the layers, plus the rest. */
  static long layoutNumel(ModelConfig c) {
    return Math.addExact(Math.addExact(ParameterStore.layoutNumel(c.embeddingSpecs()),
        Math.multiplyExact(c.layers(), ParameterStore.layoutNumel(c.blockSpecs(0)))), ParameterStore.layoutNumel(c.headSpecs()));
  }

  /**
   * Scratch arena of a CUDA training step, an upper estimate from the kernels' needs: the embedding backward's F32
   * window (at most 64 MiB), attention backward's (B, H, T) F32 row sums, the norms' backward partial sums (at
   * most 256 MiB), in 1 MiB steps.
   */
  private static long trainingScratch(ModelConfig c, int batch, int seq) {
    long f32 = DType.F32.byteSize(), rows = (long) batch * seq;
    long embedding = Math.min(64L << 20, Math.multiplyExact(Math.multiplyExact((long) c.vocabSize(), c.hidden()), f32));
    long attention = Math.multiplyExact(Math.multiplyExact(rows, c.heads()), f32);
    long norms = Math.min(256L << 20, Math.multiplyExact(Math.min(rows, 4096L) * 2 * f32, c.hidden()));
    long need = Math.max(embedding, Math.max(attention, norms));
    return Math.multiplyExact(Math.ceilDiv(need, ExecutionContext.SCRATCH_GRANULE), ExecutionContext.SCRATCH_GRANULE);
  }

  private static Tier tier(Device device) {
    return device.isCuda() ? Tier.DEVICE : Tier.HOST;
  }

  /** One role's flat buffer of {@code numel} elements. */
  private static long role(Tier tier, long numel, DType dt) {
    return saturate(() -> MemoryManager.reservedSize(tier, Math.multiplyExact(numel, (long) dt.byteSize())));
  }

  private static long saturate(LongSupplier bytes) {
    try {
      return bytes.getAsLong();
    } catch (ArithmeticException e) {
      return Long.MAX_VALUE;
    }
  }

  private static long add(long a, long b) {
    long s = a + b;
    return ((a ^ s) & (b ^ s)) < 0 ? Long.MAX_VALUE : s;
  }

  @Override
  public String toString() {
    StringBuilder sb = new StringBuilder("Footprint(" + device
        + (computeDtype == null ? "" : ", " + computeDtype.name().toLowerCase(Locale.ROOT)) + ":");
    for (Part p : parts) sb.append(' ').append(p.component().label()).append(' ').append(p.tier()).append(' ').append(size(p.bytes())).append(',');
    sb.setLength(sb.length() - 1);
    return sb.append(')').toString();
  }
}
