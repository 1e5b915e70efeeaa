package dev.athanor.nn;

import dev.athanor.params.ParamSpec;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * Megatron-style tensor parallelism: how one rank of {@code size} holds and runs its part of every block. The split is
 * described per parameter by a {@link Split} ({@link #split}): the attention's query/key/value projection and the MLP's
 * up projection are column-parallel (each rank computes its heads and its part of the inner width from the whole input),
 * the attention output and the MLP's down projection are row-parallel (each rank multiplies its part of the inner
 * dimension; the partial products are summed over ranks, then the bias is added once). Query heads and GQA key/value
 * heads are split evenly, so rank {@code r} has query heads {@code [r H/tp, (r+1) H/tp)} and the key/value heads they
 * use. The token embedding and the untied head are vocabulary-parallel (Megatron style): rank {@code r} holds rows
 * {@code [V r/tp, V (r+1)/tp)} of the (V, C) table ({@link #vocabStart}; a {@code tp} that does not divide V gives an
 * uneven cut, no padding), looks up only its tokens (the ranks' lookups are summed) and computes only its columns of
 * the logits, whose cross-entropy is put together over the ranks from per-row log-sum-exps without forming the whole
 * (B, T, V) logits. Norms, the row-parallel biases and GPT-2's position embedding are replicated.
 *
 * <p>The store of a rank holds {@link #local} shapes of the Hugging Face tensors ({@link #shard} cuts them, {@link
 * #unshard} puts the ranks' parts back together bit for bit). {@code size 1} is one process: every split is the
 * whole tensor.
 *
 * @param size the tensor-parallel ranks, {@code >= 1}
 * @param rank this process's place among them, {@code 0 <= rank < size}
 */
public record TensorParallel(int size, int rank) {
  /** One process, nothing split. */
  public static final TensorParallel NONE = new TensorParallel(1, 0);

  public TensorParallel {
    if (size < 1) throw new IllegalArgumentException("tensor-parallel size must be >= 1, got " + size);
    if (rank < 0 || rank >= size) throw new IllegalArgumentException("tensor-parallel rank " + rank + " outside [0, " + size + ")");
  }

  /** Whether anything is split (size > 1). */
  public boolean split() {
    return size > 1;
  }

  /**
   * How a parameter is cut: dimension {@code dim} of the full tensor is {@code parts} equal segments (3 for GPT-2's fused
   * {@code c_attn}: q, k, v), and each segment of length {@code n} is cut into {@code size} chunks, rank {@code r}'s
   * being {@code [n r/size, n (r+1)/size)} (equal chunks when {@code size} divides {@code n}, as it does for every split
   * of a block ({@link #check}); the vocabulary may be cut unevenly); a rank takes its chunk of every segment, in segment
   * order. {@link #REPLICATED} ({@code dim -1}): every rank holds the whole tensor.
   */
  public record Split(int dim, int parts) {
    public static final Split REPLICATED = new Split(-1, 1);

    public Split {
      if (dim < -1) throw new IllegalArgumentException("split dim must be >= -1, got " + dim);
      if (parts < 1) throw new IllegalArgumentException("split parts must be >= 1, got " + parts);
    }

    public boolean replicated() {
      return dim < 0;
    }
  }

  /**
   * Refuses a model this split cannot cut: {@code size} must divide the query heads, the key/value heads and the MLP's
   * inner width. The message names {@code --tp} and the numbers.
   */
  public void check(ModelConfig cfg) {
    Objects.requireNonNull(cfg, "cfg");
    if (cfg.heads() % size != 0) {
      throw new IllegalArgumentException("--tp " + size + " does not divide the model's " + cfg.heads() + " attention heads");
    }
    if (cfg.kvHeads() % size != 0) {
      throw new IllegalArgumentException("--tp " + size + " does not divide the model's " + cfg.kvHeads() + " key/value heads");
    }
    if (cfg.intermediate() % size != 0) {
      throw new IllegalArgumentException("--tp " + size + " does not divide the model's MLP width (intermediate) "
          + cfg.intermediate());
    }
    if (cfg.vocabSize() < size) {
      throw new IllegalArgumentException("--tp " + size + " exceeds the model's vocabulary " + cfg.vocabSize()
          + ": every rank needs rows of the vocabulary-parallel embedding");
    }
  }

  /**
   * The split of the parameter called {@code name} of a {@code cfg} model: the single description of what is cut along
   * which dimension (the model, gathering, checkpoints and the planner all use it).
   */
  public static Split split(ModelConfig cfg, String name) {
    boolean gpt2 = cfg.family() == Family.GPT2;
    String prefix = gpt2 ? "transformer.h." : "model.layers.";
    // vocabulary-parallel: the token embedding (tied or not) and the untied head, (V, C) cut along V
    if (name.equals(cfg.embeddingName()) || name.equals("lm_head.weight")) return new Split(0, 1);
    if (!name.startsWith(prefix)) return Split.REPLICATED;  // position embedding, final norm
    String s = name.substring(name.indexOf('.', prefix.length()) + 1);
    if (gpt2) {
      // Conv1D layout (in, out): column-parallel cuts dim 1 (and the bias), row-parallel dim 0
      return switch (s) {
        case "attn.c_attn.weight" -> new Split(1, 3);
        case "attn.c_attn.bias" -> new Split(0, 3);
        case "mlp.c_fc.weight" -> new Split(1, 1);
        case "mlp.c_fc.bias" -> new Split(0, 1);
        case "attn.c_proj.weight", "mlp.c_proj.weight" -> new Split(0, 1);
        default -> Split.REPLICATED;  // norms, row-parallel biases
      };
    }
    // nn.Linear layout (out, in): column-parallel cuts dim 0, row-parallel dim 1
    return switch (s) {
      case "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "mlp.gate_proj.weight",
          "mlp.up_proj.weight" -> new Split(0, 1);
      case "self_attn.o_proj.weight", "mlp.down_proj.weight" -> new Split(1, 1);
      default -> Split.REPLICATED;
    };
  }

  /** The whole model's shape of the parameter called {@code name} of a {@code cfg} model. */
  public static long[] wholeShape(ModelConfig cfg, String name) {
    for (ParamSpec s : cfg.parameterSpecs()) if (s.name().equals(name)) return s.shape();
    throw new IllegalArgumentException("the model has no parameter \"" + name + "\"");
  }

  /** A rank's shape of a tensor of full shape {@code full} cut by {@code split} into {@code size} ranks. */
  public long[] localShape(Split split, long[] full) {
    long[] s = full.clone();
    if (split.replicated()) return s;
    long seg = segment(split, full);
    s[split.dim()] = (chunkStart(seg, rank + 1) - chunkStart(seg, rank)) * split.parts();
    return s;
  }

  /** Where rank {@code r}'s chunk of a segment of length {@code seg} starts: {@code seg r / size} (r = size: seg). */
  public long chunkStart(long seg, int r) {
    return Math.multiplyExact(seg, (long) r) / size;
  }

  /** The first vocabulary id of this rank's rows of a vocabulary-parallel table of a {@code cfg} model. */
  public int vocabStart(ModelConfig cfg) {
    return (int) chunkStart(cfg.vocabSize(), rank);
  }

  /** One past the last vocabulary id of this rank's rows of a vocabulary-parallel table of a {@code cfg} model. */
  public int vocabEnd(ModelConfig cfg) {
    return (int) chunkStart(cfg.vocabSize(), rank + 1);
  }

  /** The length of one segment of dimension {@code split.dim()} of {@code full}, which must cut into the split's parts. */
  private static long segment(Split split, long[] full) {
    if (split.dim() >= full.length) {
      throw new IllegalArgumentException("split dim " + split.dim() + " outside a tensor of rank " + full.length);
    }
    long n = full[split.dim()];
    if (n % split.parts() != 0) {
      throw new IllegalArgumentException("dimension " + split.dim() + " of size " + n + " does not cut into " + split.parts()
          + " equal parts");
    }
    return n / split.parts();
  }

  /** {@code spec} as this rank holds it: the same name and decay, its {@link #localShape}. */
  public ParamSpec local(ModelConfig cfg, ParamSpec spec) {
    return new ParamSpec(spec.name(), localShape(split(cfg, spec.name()), spec.shape()), spec.decay());
  }

  /** {@link ModelConfig#parameterUnits} with every parameter in this rank's {@link #local} shape. */
  public Map<String, List<ParamSpec>> localUnits(ModelConfig cfg, Stage stage) {
    Map<String, List<ParamSpec>> units = new LinkedHashMap<>();
    cfg.parameterUnits(stage).forEach((u, specs) -> {
      List<ParamSpec> l = new ArrayList<>(specs.size());
      for (ParamSpec s : specs) l.add(local(cfg, s));
      units.put(u, l);
    });
    return units;
  }

  /** Query heads on each rank. */
  public int localHeads(ModelConfig cfg) {
    return cfg.heads() / size;
  }

  /** Key/value heads on each rank. */
  public int localKvHeads(ModelConfig cfg) {
    return cfg.kvHeads() / size;
  }

  /** The MLP's inner width on each rank. */
  public int localIntermediate(ModelConfig cfg) {
    return cfg.intermediate() / size;
  }

  /**
   * The ranges {@code {lo, hi}} along {@code split.dim()} of a tensor of full shape {@code full} that this rank holds, in
   * the order its local tensor concatenates them along that dim (one per segment: three for GPT-2's {@code c_attn});
   * none for a replicated split.
   */
  public List<long[]> slices(Split split, long[] full) {
    if (split.replicated()) return List.of();
    long seg = segment(split, full), lo = chunkStart(seg, rank), hi = chunkStart(seg, rank + 1);  // uneven cuts too
    List<long[]> l = new ArrayList<>(split.parts());
    for (int p = 0; p < split.parts(); p++) l.add(new long[] {p * seg + lo, p * seg + hi});
    return l;
  }

  /** Copies this rank's part of {@code full} (any layout, tier) into {@code local} (shape {@link #localShape}). */
  public void shard(Split split, Tensor full, Tensor local) {
    if (split.replicated()) {
      local.copyFrom(full);
      return;
    }
    long seg = segment(split, full.shape()), lo = chunkStart(seg, rank), chunk = chunkStart(seg, rank + 1) - lo;
    int d = split.dim();
    for (int p = 0; p < split.parts(); p++) {
      long from = p * seg + lo;
      try (Tensor src = full.slice(d, from, from + chunk); Tensor dst = local.slice(d, p * chunk, (p + 1) * chunk)) {
        dst.copyFrom(src);
      }
    }
  }

  /**
   * The inverse of {@link #shard}: copies rank {@code r}'s part {@code locals.get(r)} of every rank into its place in
   * {@code full} (a replicated tensor: rank 0's copy).
   */
  public static void unshard(Split split, List<Tensor> locals, Tensor full) {
    int size = locals.size();
    if (split.replicated()) {
      full.copyFrom(locals.get(0));
      return;
    }
    long seg = segment(split, full.shape());
    TensorParallel all = new TensorParallel(size, 0);
    int d = split.dim();
    for (int r = 0; r < size; r++) {
      long lo = all.chunkStart(seg, r), chunk = all.chunkStart(seg, r + 1) - lo;
      for (int p = 0; p < split.parts(); p++) {
        long to = p * seg + lo;
        try (Tensor dst = full.slice(d, to, to + chunk); Tensor src = locals.get(r).slice(d, p * chunk, (p + 1) * chunk)) {
          dst.copyFrom(src);
        }
      }
    }
  }

  /**
   * The first of rank {@code r}'s rows of {@code n} token rows (the flattened B*T) cut along the tokens for sequence
   * parallelism: {@code n / size} rows each, the first {@code n % size} ranks one more ({@code r = size}: n).
   */
  public long tokenStart(long n, int r) {
    if (n < 0) throw new IllegalArgumentException("token rows " + n + " must be >= 0");
    if (r < 0 || r > size) throw new IllegalArgumentException("rank " + r + " outside [0, " + size + "]");
    return r * (n / size) + Math.min(r, n % size);
  }

  /** The number of rank {@code r}'s rows of {@code n} token rows ({@link #tokenStart}). */
  public long tokenRows(long n, int r) {
    return tokenStart(n, r + 1) - tokenStart(n, r);
  }

  /** The collective the forward and backward need: the element-wise sum over the tensor-parallel ranks, in place. */
  @FunctionalInterface
  public interface AllReduce {
    void allReduceSum(Tensor t);

    /** One process: nothing to sum. */
    AllReduce NONE = t -> {};
  }

  /**
   * The collectives sequence parallelism adds, on tensors cut along their rows (tokens) into the ranks' parts: every rank
   * passes the same {@code counts} (elements per rank, in rank order) and calls them in the same order.
   */
  public interface TokenCollectives {
    /** {@code out} (all parts) = rank 0's {@code in}, then rank 1's, ... ({@code in}: {@code counts[rank]} elements). */
    void allGather(Tensor in, Tensor out, long[] counts);

    /**
     * {@code out} ({@code counts[rank]} elements, {@code in}'s dtype) = this rank's part of the element-wise sum over the
     * ranks of {@code in} (every part), added in rank order {@code in_0 + in_1 + ...} as {@link AllReduce#allReduceSum}
     * adds them in deterministic mode, so each element has the all-reduce's bits.
     */
    void reduceScatter(Tensor in, Tensor out, long[] counts);
  }
}
