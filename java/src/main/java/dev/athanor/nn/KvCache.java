package dev.athanor.nn;

import dev.athanor.memory.Tier;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.HashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * Keys and values of every layer for {@code batch} sequences of up to {@code capacity} tokens: per layer
 * two (B, capacity, KV, D) tensors in the model's compute dtype (Llama keys after RoPE). All sequences
 * of a cache have the same length; {@link #length()} grows with each
 * {@link Transformer#forwardCached(KvCache, int[], int, int)}.
 *
 * <p>A paged cache ({@link Transformer#setKvCachePaging}) holds no layer in memory: before a layer attends, its
 * {@link Paging} hands out a window (B, capacity, KV, D) holding the layer's cached tokens (e.g. read from a file on
 * DISK), the new keys and values are copied into it and reported with {@link Paging#appended}, and attention reads the
 * window. The windows' rows are the ones an in-memory cache holds, so decoding gives the same bits.
 */
public final class KvCache implements AutoCloseable {
  /**
   * Where a paged cache's layers live between their uses. Called by the computing thread only, in the order the
   * layers run: for each layer of a step {@link #acquire} then {@link #appended}.
   */
  public interface Paging extends AutoCloseable {
    /** Elements between two sequences in a window (at least capacity x kvHeads x headDim). */
    long batchStride();

    /**
     * Layer {@code layer}'s (0 = the cache's first) key and value windows: HOST tensors of at least batch x
     * {@link #batchStride()} elements (owned by the paging), laid out (B, capacity, KV, D) with that batch stride and
     * holding the first {@code length} cached tokens of each sequence. Valid until the next call of {@code acquire}.
     */
    Tensor[] acquire(int layer, int length);

    /** Tokens [from, from + n) of each sequence were written into the windows of {@code layer}: keep them. */
    void appended(int layer, int from, int n);

    /** Waits for every transfer and frees what the paging holds; throws the first transfer failure not yet thrown. */
    @Override
    void close();
  }

  /**
   * The shape of a cache, for a {@link Paging}: layers {@code firstLayer ..< firstLayer + layers} of the model, each
   * two (B, capacity, KV, D) tensors of {@code dtype}.
   */
  public record Layout(int firstLayer, int layers, int batch, int capacity, int kvHeads, int headDim, DType dtype) {
    /** Elements of one sequence's keys (or values) of one layer. */
    public long sequenceElements() {
      return (long) capacity * kvHeads * headDim;
    }

    /** Bytes of one token's keys (or values) of one layer: kvHeads x headDim elements. */
    public long rowBytes() {
      return (long) kvHeads * headDim * dtype.byteSize();
    }
  }

  private final Tensor[] keys, values;
  private final int batch, capacity, kvHeads, headDim, firstLayer;
  private final DType dtype;
  private final Paging paging;  // null: every layer in memory
  private final long batchStride;
  private int length;
  private final Map<Integer, Step> steps = new HashMap<>();

  KvCache(ModelConfig c, Stage stage, Device device, DType dtype, int batch, int capacity) {
    this(c, stage, device, dtype, batch, capacity, null);
  }

  /** A cache whose layers are held by the paging {@code paging} makes for its layout, or in memory when it is null. */
  KvCache(ModelConfig c, Stage stage, Device device, DType dtype, int batch, int capacity,
      Function<Layout, Paging> paging) {
    if (batch <= 0 || capacity <= 0) {
      throw new IllegalArgumentException("cache batch " + batch + " and capacity " + capacity + " must be > 0");
    }
    this.batch = batch;
    this.capacity = capacity;
    this.kvHeads = c.kvHeads();
    this.headDim = c.headDim();
    this.firstLayer = stage.firstBlock();
    this.dtype = dtype;
    keys = new Tensor[stage.blocks()];
    values = new Tensor[stage.blocks()];
    if (paging != null) {
      this.paging = paging.apply(new Layout(firstLayer, stage.blocks(), batch, capacity, kvHeads, headDim, dtype));
      this.batchStride = this.paging.batchStride();
      if (batchStride < (long) capacity * kvHeads * headDim) {
        this.paging.close();
        throw new IllegalArgumentException("paging batch stride " + batchStride + " is below a sequence's "
            + (long) capacity * kvHeads * headDim + " elements");
      }
      return;
    }
    this.paging = null;
    this.batchStride = (long) capacity * kvHeads * headDim;
    try {
      for (int l = 0; l < keys.length; l++) {
        keys[l] = Tensor.empty(dtype, device, batch, capacity, kvHeads, headDim).detach();
        values[l] = Tensor.empty(dtype, device, batch, capacity, kvHeads, headDim).detach();
      }
    } catch (RuntimeException e) {
      close();
      throw e;
    }
  }

  /** The bytes of the keys and values the constructor allocates (see {@link BufferSizes}). */
  static long bytes(ModelConfig c, Stage stage, Device device, DType dtype, int batch, int capacity) {
    return new BufferSizes(device).add(2L * stage.blocks(), dtype, batch, capacity, c.kvHeads(), c.headDim()).total();
  }

  public int batch() {
    return batch;
  }

  public int capacity() {
    return capacity;
  }

  /** Tokens cached per sequence so far. */
  public int length() {
    return length;
  }

  /** Whether the layers live outside memory between their uses ({@link Paging}). */
  public boolean paged() {
    return paging != null;
  }

  /** Forgets the cached tokens (the buffers are kept). */
  public void reset() {
    length = 0;
  }

  /**
   * Copies block {@code layer}'s new keys and values (B, KV, n, D) (any strides) into positions
   * [length, length + n) and returns views of everything cached so far, (B, KV, length + n, D) each, which the
   * caller closes.
   */
  Tensor[] append(int layer, Tensor k, Tensor v) {
    int l = layer - firstLayer;
    long n = k.size(2), kvd = (long) kvHeads * headDim, tk = length + n;
    long[] strides = {batchStride, headDim, kvd, 1};
    Tensor[] all = new Tensor[2];
    Tensor[] src = {k, v};
    Tensor[] dst = paging == null ? new Tensor[] {keys[l], values[l]} : paging.acquire(l, length);
    try {
      for (int i = 0; i < 2; i++) {
        try (Tensor rows = Tensor.wrap(dst[i].storage(), dtype, new long[] {batch, kvHeads, n, headDim}, strides,
            length * kvd)) {
          rows.copyFrom(src[i]);
        }
        if (paging != null && i == 1) paging.appended(l, length, (int) n);
        all[i] = Tensor.wrap(dst[i].storage(), dtype, new long[] {batch, kvHeads, tk, headDim}, strides, 0);
      }
      return all;
    } catch (RuntimeException e) {
      for (Tensor t : all) if (t != null) t.close();
      throw e;
    }
  }

  /** The step buffers for n new tokens per sequence, made on first use and kept until close. */
  Step step(int n, java.util.function.Supplier<Step> make) {
    Step b = steps.get(n);
    if (b == null) {
      if (steps.size() >= 4) {  // prompts of many lengths: keep the decode (n = 1) buffers, drop the rest
        steps.entrySet().removeIf(e -> {
          if (e.getKey() == 1) return false;
          e.getValue().close();
          return true;
        });
      }
      b = make.get();
      steps.put(n, b);
    }
    return b;
  }

  void advance(int n) {
    length += n;
  }

  @Override
  public void close() {
    for (Step b : steps.values()) b.close();
    steps.clear();
    if (paging != null) paging.close();
    for (Tensor[] ts : new Tensor[][] {keys, values}) {
      for (Tensor t : ts) {
        if (t != null) t.close();
      }
    }
  }

  /**
   * The buffers of one cached step shape (B sequences x n new tokens), reused by every step of that shape: the
   * block activations (transient here), the residual stream and the head's last-position logits.
   */
  static final class Step extends TensorGroup {
    final int b, n;
    final BlockActs acts;                          // (B*n rows)
    final Tensor ids, posIds, x, tmp, stats, stats2, lastRows, logits;
    private final int vocab;
    private Tensor logitsHost;  // a pinned (B, V) staging buffer made by the first logitsHost(), or null

    /** The bytes the constructor allocates in the device's tier (see {@link BufferSizes}). */
    static long bytes(ModelConfig c, Device dev, DType dt, int b, int n) {
      long rows = (long) b * n;
      return new BufferSizes(dev)
          .add(1, BlockActs.bytes(c, dev, dt, b, n))
          .add(c.family() == Family.GPT2 ? 2 : 1, DType.I32, rows)  // ids, posIds
          .add(2, dt, rows, c.hidden())                             // x, tmp
          .add(2, DType.F32, rows)                                  // stats, stats2
          .add(DType.F32, b, c.vocabSize())                         // logits
          .total();
    }

    /**
     * The bytes of the pinned host buffer {@link #logitsHost()} makes (CUDA only: what {@link
     * Transformer#forwardCached} copies a step's logits through; sampling on the device never makes it).
     */
    static long pinnedBytes(ModelConfig c, Device dev, int b) {
      return dev.isCuda() ? new BufferSizes(Tier.HOST_PINNED).add(DType.F32, b, c.vocabSize()).total() : 0;
    }

    Step(ModelConfig c, Device dev, DType dt, int b, int n) {
      this.b = b;
      this.n = n;
      this.vocab = c.vocabSize();
      long rows = (long) b * n, C = c.hidden();
      BlockActs a = null;
      try {
        a = new BlockActs(c, dev, dt, b, n);
        ids = own(Tensor.zeros(DType.I32, dev, rows));
        posIds = c.family() == Family.GPT2 ? own(Tensor.zeros(DType.I32, dev, rows)) : null;
        x = own(Tensor.empty(dt, dev, rows, C));                      // residual (N, C)
        tmp = own(Tensor.empty(dt, dev, rows, C));
        stats = own(Tensor.empty(DType.F32, dev, rows));
        stats2 = own(Tensor.empty(DType.F32, dev, rows));
        lastRows = own(own(a.n1.view(b, n, C)).select(1, n - 1));     // (B, C), row stride n*C
        logits = own(Tensor.empty(DType.F32, dev, b, c.vocabSize())); // (B, V) FP32
      } catch (RuntimeException e) {
        if (a != null) a.close();
        close();
        throw e;
      }
      this.acts = a;
    }

    /**
     * A pinned (B, V) F32 host buffer, so a step's logits reach the host in one DMA: made by the first call (a caller
     * that wants the logits on the host) and kept, owned by this step and closed with it.
     */
    Tensor logitsHost() {
      if (logitsHost == null) logitsHost = own(Tensor.empty(DType.F32, Device.CPU, Tier.HOST_PINNED, b, vocab));
      return logitsHost;
    }

    /** Whether {@link #logitsHost()} has made its buffer. */
    boolean hasLogitsHost() {
      return logitsHost != null;
    }

    @Override
    public void close() {
      super.close();
      logitsHost = null;
      if (acts != null) acts.close();
    }
  }
}
