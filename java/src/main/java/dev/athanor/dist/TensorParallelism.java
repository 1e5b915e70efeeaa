package dev.athanor.dist;

import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.nn.TensorParallel;
import dev.athanor.nn.Transformer;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParamSpec;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.GradientReducer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.function.Predicate;

/**
 * Tensor parallelism over a {@link Communicator}: every rank of the communicator is one tensor-parallel rank of one
 * model ({@link TensorParallel}), reads the same batches and computes the same loss. The model's forward and backward
 * sum over the ranks themselves; this class is the trainer's side of it: the gradient reducer (nothing to sum: each
 * rank's gradients are those of its own parameters, the replicated ones identical on every rank because every rank
 * computes them from identical inputs) whose clipping norm adds the split parameters' squares over ranks, and the
 * gathering of the whole model to rank 0 for saving.
 *
 * <p>Exactness: the row-parallel products and the column-parallel input gradients add per-rank partial sums in rank
 * order, a summation order that differs from one process's GEMM, and the vocabulary-parallel cross-entropy puts each
 * row's log-sum-exp together from the ranks' partial ones; results agree with one process within rounding (see the
 * tests' measured differences), not bit for bit. The embedding's lookup and its gradient are exact.
 */
public final class TensorParallelism implements GradientReducer {
  private final Communicator comm;
  private final ModelConfig cfg;
  private final Set<String> split;  // names of the parameters cut over the ranks

  /** The gradient reducer of a {@code cfg} model whose tensor-parallel ranks are {@code comm}'s. */
  public TensorParallelism(Communicator comm, ModelConfig cfg) {
    this.comm = Objects.requireNonNull(comm, "comm");
    this.cfg = Objects.requireNonNull(cfg, "cfg");
    Set<String> s = new HashSet<>();
    for (ParamSpec p : cfg.parameterSpecs()) if (!TensorParallel.split(cfg, p.name()).replicated()) s.add(p.name());
    this.split = Set.copyOf(s);
  }

  /** The tensor-parallel part of this rank: one of {@code comm.size()}. */
  public static TensorParallel of(Communicator comm) {
    return new TensorParallel(comm.size(), comm.rank());
  }

  /** This rank's part of a {@code config} model on {@code device} in its default compute dtype, summing over {@code comm}. */
  public static Transformer create(ModelConfig config, Device device, Communicator comm) {
    return create(config, device, comm, Stage.whole(config));
  }

  /**
   * This rank's part of pipeline stage {@code stage} of a {@code config} model on {@code device} in its default compute
   * dtype, summing over {@code comm} (the stage's tensor-parallel group).
   */
  public static Transformer create(ModelConfig config, Device device, Communicator comm, Stage stage) {
    return new Transformer(config, device, Transformer.defaultComputeDtype(device), stage, of(comm), comm::allReduceSum);
  }

  /**
   * The collectives of sequence parallelism ({@link Transformer#setSequenceParallel}) over {@code comm}'s ranks: the
   * all-gather is {@link Communicator#allGatherV}; the reduce-scatter is {@link Communicator#reduceScatterAccumulateV}
   * without an accumulator, {@code in_0 + in_1 + ...} in rank order in F32 whatever the mode, the sum {@link
   * Communicator#allReduceSum} forms in deterministic mode (a BF16 or F16 tensor is summed in F32 and rounded once, as
   * there), so each row gets the all-reduce's bits.
   */
  public static TensorParallel.TokenCollectives tokens(Communicator comm) {
    Objects.requireNonNull(comm, "comm");
    return new TensorParallel.TokenCollectives() {
      @Override
      public void allGather(Tensor in, Tensor out, long[] counts) {
        comm.allGatherV(in, out, counts);
      }

      @Override
      public void reduceScatter(Tensor in, Tensor out, long[] counts) {
        if (in.dtype() == DType.F32 && out.dtype() == DType.F32) {
          comm.reduceScatterAccumulateV(in, out, counts, true);
          return;
        }
        try (Tensor in32 = Ops.convert(in, DType.F32); Tensor out32 = Tensor.empty(DType.F32, Device.CPU, out.shape())) {
          comm.reduceScatterAccumulateV(in32, out32, counts, true);
          try (Tensor back = Ops.convert(out32, out.dtype())) {
            out.copyFrom(back);
          }
        }
      }
    };
  }

  @Override
  public void reduce(ParameterStore store, Role gradRole) {
    // each rank owns its split parameters' gradients; the replicated ones are already equal on every rank
  }

  /**
   * The global gradient norm: the squares of the split parameters' gradients summed per parameter, added over ranks in
   * rank order, plus the replicated parameters' squares counted once. Every rank gets the same value.
   */
  @Override
  public float gradientNorm(ParameterStore store, Role gradRole) {
    List<String> names = store.list().stream().map(ParameterStore.Param::name).toList();
    return norm(names, squaredSums(store, gradRole, names, name -> true));
  }

  /**
   * The terms of the norm that {@code store} holds, one per name of {@code names} (e.g. the whole model's parameters,
   * in its layout order, when the store holds one pipeline stage of them): the sum of squares of the gradient of each
   * parameter the store has and {@code counted} accepts, for a split parameter summed over the tensor-parallel ranks in
   * rank order (a collective over them); 0 for the others. The whole norm is {@link #norm} of the terms, once the
   * stages' terms were put together (each held by one stage, so adding the zeros of the others keeps its bits).
   */
  public float[] squaredSums(ParameterStore store, Role gradRole, List<String> names, Predicate<String> counted) {
    float[] terms = new float[names.size()];
    for (int i = 0; i < terms.length; i++) {
      String name = names.get(i);
      if (!store.contains(name) || !counted.test(name)) continue;
      try (Tensor s = Ops.sumSquares(store.view(gradRole, name))) {
        terms[i] = s.item();
      }
    }
    return sumSplit(store, names, counted, terms);
  }

  /**
   * Completes this rank's terms of the norm ({@code terms}, one per name of {@code names}: the sum of squares of each
   * parameter's local gradient, formed as {@link Ops#sumSquares} forms it; e.g. put together from ZeRO shards): the
   * split parameters the store has and {@code counted} accepts are summed over the tensor-parallel ranks in rank order
   * (a collective over them), as {@link #squaredSums} does. Returns {@code terms}, changed in place.
   */
  public float[] sumSplit(ParameterStore store, List<String> names, Predicate<String> counted, float[] terms) {
    if (terms.length != names.size()) {
      throw new IllegalArgumentException(terms.length + " norm terms for " + names.size() + " parameters");
    }
    List<Integer> cut = new ArrayList<>();
    for (int i = 0; i < terms.length; i++) {
      String name = names.get(i);
      if (store.contains(name) && counted.test(name) && split.contains(name)) cut.add(i);
    }
    if (!cut.isEmpty()) {
      float[] parts = new float[cut.size()];
      for (int k = 0; k < parts.length; k++) parts[k] = terms[cut.get(k)];
      try (Tensor t = Tensor.of(parts, parts.length)) {
        comm.allReduceSum(t);
        parts = t.toFloatArray();
      }
      for (int k = 0; k < parts.length; k++) terms[cut.get(k)] = parts[k];
    }
    return terms;
  }

  /**
   * The global norm from {@link #squaredSums} of the whole model's {@code names}: the split parameters' terms added in
   * double in order, then the replicated ones; the same bits for any placement of the terms.
   */
  public float norm(List<String> names, float[] terms) {
    if (terms.length != names.size()) {
      throw new IllegalArgumentException(terms.length + " norm terms for " + names.size() + " parameters");
    }
    double total = 0;
    for (int i = 0; i < terms.length; i++) if (split.contains(names.get(i))) total += terms[i];
    for (int i = 0; i < terms.length; i++) if (!split.contains(names.get(i))) total += terms[i];
    return (float) Math.sqrt(total);
  }

  /**
   * The whole model's FP32 weights by Hugging Face name, in layout order, on rank 0 (host tensors the caller closes);
   * null on the other ranks. A collective: every rank calls it. The parts are gathered bit for bit, so the result is
   * the single-process model of the same weights.
   */
  public static Map<String, Tensor> gatherWeights(Transformer model, Communicator comm) {
    ModelConfig cfg = model.config();
    Map<String, Tensor> out = comm.rank() == 0 ? new LinkedHashMap<>() : null;
    try {
      for (ParameterStore.Param p : model.parameters().list()) {
        Tensor whole = out == null ? null : Tensor.empty(DType.F32, Device.CPU, TensorParallel.wholeShape(cfg, p.name()));
        if (whole != null) out.put(p.name(), whole);
        gather(comm, TensorParallel.split(cfg, p.name()), TensorParallel.wholeShape(cfg, p.name()), p.master(), whole);
      }
      return out;
    } catch (RuntimeException e) {
      if (out != null) out.values().forEach(Tensor::close);
      throw e;
    }
  }

  /**
   * Every rank's part {@code local} (contiguous host F32) of one tensor of shape {@code wholeShape} cut by {@code split},
   * put together in {@code whole} on rank 0 (null elsewhere), bit for bit. A replicated tensor is rank 0's own.
   */
  private static void gather(Communicator comm, TensorParallel.Split split, long[] wholeShape, Tensor local, Tensor whole) {
    if (split.replicated()) {
      if (whole != null) whole.copyFrom(local);
      return;
    }
    int size = comm.size();
    long[] counts = new long[size];
    long total = 0;
    for (int r = 0; r < size; r++) {
      counts[r] = numel(new TensorParallel(size, r).localShape(split, wholeShape));
      total += counts[r];
    }
    try (Tensor all = Tensor.empty(DType.F32, Device.CPU, total)) {
      comm.allGatherV(local, all, counts);  // a vocabulary cut may be uneven: each rank its own length
      if (whole == null) return;
      List<Tensor> parts = new ArrayList<>(size);
      try {
        long at = 0;
        for (int r = 0; r < size; r++) {
          try (Tensor flat = all.slice(0, at, at + counts[r])) {
            parts.add(flat.view(new TensorParallel(size, r).localShape(split, wholeShape)));
          }
          at += counts[r];
        }
        TensorParallel.unshard(split, parts, whole);
      } finally {
        parts.forEach(Tensor::close);
      }
    }
  }

  private static long numel(long[] shape) {
    long n = 1;
    for (long d : shape) n *= d;
    return n;
  }
}
