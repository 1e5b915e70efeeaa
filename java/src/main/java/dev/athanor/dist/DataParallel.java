package dev.athanor.dist;

import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Range;
import dev.athanor.params.Role;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import dev.athanor.train.AdamW;
import dev.athanor.train.GradientReducer;
import dev.athanor.train.Trainer;
import java.util.Objects;

/**
 * Data parallelism: the trainer's gradient reducer over a {@link Communicator}. Every rank holds the whole model and
 * runs {@code accum} micro-batches per step; rank {@code r} takes the {@code r}-th micro-batch of each group of {@code
 * size} consecutive micro-batches of the one data stream (its loader set with {@link
 * dev.athanor.io.data.DataLoader#setReplica}), each loss scaled by {@code 1 / (accum × size)}; the step's gradient is
 * then the sum over ranks ({@link Communicator#allReduceSum}), i.e. the mean over all {@code accum × size}
 * micro-batches, and every rank takes the same optimizer step.
 *
 * <p>Plain data parallel and ZeRO 1 attached with a bucket size ({@link #attach(Trainer, Communicator, long)}) start
 * the all-reduce during the backward of the step's last micro-batch, bucket by bucket as the units complete, on a
 * communication thread ({@link OverlappedReduction}; on CUDA, plain data parallel, on a communication stream: {@link
 * StreamOverlappedReduction}); {@link #reduce} then waits for it. The bits are the same.
 *
 * <p>ZeRO stage 1 ({@link #DataParallel(Communicator, boolean)}, a trainer built with {@link #optimizerShard}): each rank
 * keeps AdamW's moments for its part of the flat parameters only and updates that part; the updated masters are then
 * all-gathered.
 *
 * <p>ZeRO stage 2 (a trainer built with {@link Trainer#Trainer(dev.athanor.nn.Transformer, dev.athanor.train.TrainConfig,
 * dev.athanor.io.data.DataLoader, Range, boolean)}): the step's gradient exists only as this rank's shard (the same
 * partition as ZeRO 1). After each micro-batch's backward, {@link #accumulateShard} sends each rank the part of every
 * rank's micro-batch gradient that it owns ({@link Communicator#reduceScatterAccumulate}) and the owner folds them into
 * its shard accumulator, accumulator first, then the ranks in order: {@code ((acc + g_{k,0}) + g_{k,1}) + ...}, the
 * first micro-batch copied, not added to zero. That is the left fold of one process with {@code accum × size}
 * micro-batches in the global order (micro-batch {@code k} of rank {@code r} is number {@code k × size + r}), so ZeRO 2
 * equals one process with {@code accum × size} bit for bit for any {@code accum}. On the CPU with the whole model in each
 * process ({@link UnitGradientFold}, a trainer built with {@link Trainer#Trainer(dev.athanor.nn.Transformer,
 * dev.athanor.train.TrainConfig, dev.athanor.io.data.DataLoader, dev.athanor.train.ShardedGradients)}) the same fold runs
 * unit by unit as each unit's backward ends, so no whole micro-batch gradient exists; the bits are the same (also with
 * each unit's fold on a communication thread while the backward goes on, {@link UnitGradientFold#attach(
 * dev.athanor.nn.Transformer, Communicator, boolean)}). The clipping norm ({@link
 * #shardedNorm}) has one process's bits: each chunk of {@link Ops#NORM_CHUNK} elements gets its partial sum of
 * squares from the rank holding its first element (the pieces of a chunk that straddles a shard boundary are sent to
 * it first), the partials are combined across ranks (each held by one rank, zeros elsewhere: exact) and added in double
 * in chunk order, as {@link Ops#globalNorm} adds them.
 *
 * <p>ZeRO stage 3 (a trainer built with {@link Trainer#Trainer(dev.athanor.nn.Transformer,
 * dev.athanor.train.TrainConfig, dev.athanor.io.data.DataLoader, dev.athanor.train.ShardedParameters)} over {@link
 * ShardedWeights}): the masters, too, exist only as this rank's shard; each unit's weights are gathered before it runs
 * and its micro-batch gradient is folded into the owners' shards as soon as its backward is done, with the fold of ZeRO
 * 2 (so the bits are ZeRO 2's); the norm is {@link #shardedNorm}, and nothing is gathered after the update.
 *
 * <p>Exactness (CPU, deterministic mode): with {@code accum = 1}, dp {@code N} adds the {@code N} micro-batch
 * gradients in rank order, which is the order one process with {@code accum N} adds them in, with the same kernel:
 * losses, gradients and weights are bit-identical. With {@code accum > 1} each rank first adds its own micro-batches,
 * so the additions are grouped differently from one process with {@code accum × N} (the result differs in the last
 * bits); the reported loss is still the one process's (all micro-batch losses are added in the global order). ZeRO 2
 * and 3 have no such difference (above): at {@code accum > 1} they equal one process and differ from plain dp and ZeRO 1 in
 * the last bits; at {@code accum 1} all of them are identical.
 */
public final class DataParallel implements GradientReducer {
  private final Communicator comm;
  private final boolean shardedOptimizer;
  private BucketedReduction overlap;  // the all-reduce overlapped with the backward, or null: after it

  /** Plain data parallel: every rank updates every parameter. */
  public DataParallel(Communicator comm) {
    this(comm, false);
  }

  /**
   * With {@code shardedOptimizer} (ZeRO 1), each rank's optimizer updates only its {@link #optimizerShard} and {@link
   * #afterUpdate} all-gathers the updated masters (bit-identical to plain data parallel: the same kernel on the same
   * elements, and a gather copies bits).
   */
  public DataParallel(Communicator comm, boolean shardedOptimizer) {
    this.comm = Objects.requireNonNull(comm, "comm");
    this.shardedOptimizer = shardedOptimizer;
  }

  /** This rank's part of {@code store}'s flat parameters under ZeRO 1 ({@link Communicator#partStart}). */
  public static Range optimizerShard(ParameterStore store, Communicator comm) {
    long n = store.numel();
    return new Range(Communicator.partStart(n, comm.rank(), comm.size()), Communicator.partStart(n, comm.rank() + 1, comm.size()));
  }

  /** Makes {@code trainer} one replica: its gradient reducer, and its data loader reading this rank's micro-batches. */
  public static DataParallel attach(Trainer trainer, Communicator comm) {
    Range shard = trainer.optimizer().shard();
    if (shard != null && !shard.equals(optimizerShard(trainer.model().parameters(), comm))) {
      throw new IllegalArgumentException("the trainer's optimizer shard " + shard + " is not rank " + comm.rank() + "'s part "
          + optimizerShard(trainer.model().parameters(), comm) + " of the parameters");
    }
    DataParallel dp = new DataParallel(comm, shard != null);
    trainer.data().setReplica(comm.rank(), comm.size());
    trainer.setGradientReducer(dp);
    return dp;
  }

  /**
   * {@code ATHANOR_CUDA_STREAM_OVERLAP=1} (read once): CUDA models overlap the all-reduce on a communication stream.
   * Off by default until a GPU check has run {@link StreamOverlappedReduction}; without it CUDA reduces after the
   * backward, as before.
   */
  static final boolean STREAM_OVERLAP = "1".equals(System.getenv("ATHANOR_CUDA_STREAM_OVERLAP"));

  /**
   * As {@link #attach(Trainer, Communicator)}, with the all-reduce of plain data parallel and ZeRO 1 overlapped with
   * the backward in buckets of at most {@code bucketBytes} of gradient when {@code bucketBytes > 0}, there is more than
   * one rank, the trainer's step gradient is whole (not ZeRO 2 or 3) and the model allows it: on the CPU a communication
   * thread ({@link OverlappedReduction#supports}), on CUDA a communication stream ({@link
   * StreamOverlappedReduction#supports}; only under {@code ATHANOR_CUDA_STREAM_OVERLAP=1} until a GPU check
   * has run it); else the reduction runs after the backward. The bits are the same either way
   * (deterministic mode). The trainer closes the reducer, and with it the thread or stream.
   */
  public static DataParallel attach(Trainer trainer, Communicator comm, long bucketBytes) {
    DataParallel dp = attach(trainer, comm);
    if (bucketBytes > 0 && comm.size() > 1 && trainer.gradientShard() == null) {
      if (OverlappedReduction.supports(trainer.model())) {
        dp.overlap = OverlappedReduction.attach(trainer.model(), comm, bucketBytes);
      } else if (StreamOverlappedReduction.supports(trainer.model()) && STREAM_OVERLAP) {
        dp.overlap = StreamOverlappedReduction.attach(trainer.model(), comm, bucketBytes);
      }
    }
    return dp;
  }

  /** Tests: reduce through {@code o} (attached to the trainer's model) instead of after the backward. */
  void overlapWith(BucketedReduction o) {
    if (overlap != null) throw new IllegalStateException("an overlapped reduction is already attached: " + overlap);
    overlap = Objects.requireNonNull(o, "o");
  }

  /** The communicator. */
  public Communicator communicator() {
    return comm;
  }

  /** The overlapped reduction ({@link #attach(Trainer, Communicator, long)}), or null when it runs after the backward. */
  public BucketedReduction overlap() {
    return overlap;
  }

  @Override
  public boolean startDuringBackward(ParameterStore store, Role microGrad, Role stepGrad) {
    if (overlap == null) return false;
    overlap.arm(microGrad, stepGrad);
    return true;
  }

  @Override
  public void reduce(ParameterStore store, Role gradRole) {
    if (overlap != null && overlap.armed()) {
      overlap.await();  // the buckets started during the backward
      return;
    }
    comm.allReduceSum(store.flat(gradRole));
  }

  /** The optimizer on the host's gradient in host memory: summed over the ranks in place, as {@link #reduce(ParameterStore, Role)}. */
  @Override
  public void reduce(Tensor grad) {
    comm.allReduceSum(grad);
  }

  @Override
  public void abandonStep() {
    if (overlap != null) overlap.discard();
  }

  /** Stops the overlapped reduction's thread or stream (nothing to do without one). */
  @Override
  public void close() {
    if (overlap != null) overlap.close();
  }

  @Override
  public void accumulateShard(ParameterStore store, Role gradRole, Range shard, Tensor acc, boolean first) {
    if (!shard.equals(optimizerShard(store, comm))) {
      throw new IllegalArgumentException("gradient shard " + shard + " is not rank " + comm.rank() + "'s part " + optimizerShard(store, comm));
    }
    comm.reduceScatterAccumulate(store.flat(gradRole), acc, first);
  }

  @Override
  public float shardedNorm(ParameterStore store, Range shard, Tensor grad) {
    if (comm.size() == 1) return GradientReducer.super.shardedNorm(store, shard, grad);
    try (Tensor g = grad.view(grad.numel())) {
      return shardedNorm(store, shard, r -> g.slice(0, r.start() - shard.start(), r.end() - shard.start()));
    }
  }

  /**
   * ZeRO 2 and 3: {@link #shardedNorm(ParameterStore, Range, Tensor)} with this rank's part of each norm chunk read
   * through {@code grad} (a slice of the shard in memory, or read from DISK), one chunk at a time: the same bits.
   */
  @Override
  public float shardedNorm(ParameterStore store, Range shard, ShardReader grad) {
    if (comm.size() == 1) return GradientReducer.super.shardedNorm(store, shard, grad);
    long n = store.numel();
    if (n == 0) return 0f;
    int chunks = Math.toIntExact((n + Ops.NORM_CHUNK - 1) / Ops.NORM_CHUNK);
    float[] partials = new float[chunks];
    for (int c = 0; c < chunks; c++) {
      Range whole = new Range(c * Ops.NORM_CHUNK, Math.min(n, (c + 1) * Ops.NORM_CHUNK));
      Range mine = whole.intersect(shard);
      try (Tensor x = mine.isEmpty() ? null : grad.read(mine)) {
        if (mine.equals(whole)) {
          partials[c] = Ops.sumSquaresPartials(x)[0];
          continue;
        }
        // this rank's piece is x, the shard's elements `mine` (or none: it takes part without sending)
        try (Tensor buf = assemble(comm, n, mine.isEmpty() ? shard : mine, x, whole)) {
          if (buf != null) partials[c] = Ops.sumSquaresPartials(buf)[0];
        }
      }
    }
    float[] all;
    try (Tensor t = Tensor.of(partials, chunks)) {
      comm.allReduceSum(t);  // each partial is non-zero on one rank only: the sums are exact in either mode
      all = t.toFloatArray();
    }
    double total = 0;
    for (int c = 0; c < chunks; c++) total += all[c];  // chunk order, in double, as Ops.globalNorm adds them
    return (float) Math.sqrt(total);
  }

  /**
   * The elements {@code whole} of a flat gradient of {@code n} elements cut over {@code comm} ({@link #optimizerShard};
   * this rank holds {@code shard} of it in the flat {@code g}), put together on the rank holding {@code whole}'s first
   * element: that rank returns a new F32 host tensor of them (its piece, then the others' in rank order; the caller
   * closes it), the others send it their pieces and return null. Every rank holding a piece must call it.
   */
  static Tensor assemble(Communicator comm, long n, Range shard, Tensor g, Range whole) {
    int owner = ownerOf(whole.start(), n, comm.size());
    if (comm.rank() != owner) {
      collect(comm, n, shard, g, whole, owner, null);
      return null;
    }
    Tensor buf = Tensor.empty(DType.F32, Device.CPU, whole.length());
    try {
      collect(comm, n, shard, g, whole, owner, buf);
      return buf;
    } catch (RuntimeException e) {
      buf.close();
      throw e;
    }
  }

  /**
   * The elements {@code whole} of a flat vector of {@code n} elements cut over {@code comm}'s ranks in order (this rank
   * holds {@code shard} of it in the flat {@code g}), collected on rank {@code collector}: every other rank sends it its
   * piece of {@code whole}, and the collector writes every piece, its own copied, the others received in rank order, into
   * {@code out} ({@code whole.length()} elements; not read on the other ranks). Every rank holding a piece must call it.
   */
  public static void collect(Communicator comm, long n, Range shard, Tensor g, Range whole, int collector, Tensor out) {
    int size = comm.size(), me = comm.rank();
    if (me != collector) {
      Range mine = whole.intersect(shard);
      if (!mine.isEmpty()) {
        try (Tensor x = g.slice(0, mine.start() - shard.start(), mine.end() - shard.start())) {
          comm.send(x, collector);
        }
      }
      return;
    }
    for (int r = 0; r < size; r++) {
      Range piece = whole.intersect(new Range(Communicator.partStart(n, r, size), Communicator.partStart(n, r + 1, size)));
      if (piece.isEmpty()) continue;
      try (Tensor dst = out.slice(0, piece.start() - whole.start(), piece.end() - whole.start())) {
        if (r == me) {
          try (Tensor x = g.slice(0, piece.start() - shard.start(), piece.end() - shard.start())) {
            dst.copyFrom(x);
          }
        } else {
          comm.recv(dst, r);
        }
      }
    }
  }

  /** The rank whose part of {@code n} elements holds element {@code e}. */
  private static int ownerOf(long e, long n, int size) {
    for (int r = 0; r < size; r++) if (e < Communicator.partStart(n, r + 1, size)) return r;
    throw new IllegalArgumentException("element " + e + " is outside " + n);
  }

  @Override
  public void afterUpdate(ParameterStore store) {
    if (!shardedOptimizer || comm.size() == 1) return;
    if (store.isPaged(Role.MASTER)) return;  // ZeRO 3: the optimizer updated the shard's masters; the next forward gathers them
    Range mine = optimizerShard(store, comm);
    Tensor masters = store.flat(Role.MASTER);
    try (Tensor part = masters.slice(0, mine.start(), mine.end())) {
      comm.allGather(part, masters);  // in place
    }
  }

  /**
   * ZeRO 1 with the optimizer on the host: every rank's part of {@code range} in its {@link #optimizerShard}
   * all-gathered in place into the compute weights of {@code range} (on the device: NCCL there, or staged through the
   * host by the communicator), so the bits are the owners'.
   */
  @Override
  public void gatherWeights(ParameterStore store, Range range) {
    if (comm.size() == 1) return;
    long n = store.numel();
    long[] counts = new long[comm.size()];
    for (int r = 0; r < counts.length; r++) {
      counts[r] = range.intersect(new Range(Communicator.partStart(n, r, comm.size()), Communicator.partStart(n, r + 1,
          comm.size()))).length();
    }
    Range mine = range.intersect(optimizerShard(store, comm));
    long at = mine.isEmpty() ? 0 : mine.start() - range.start();
    try (Tensor w = store.slice(Role.WEIGHT, range); Tensor part = w.slice(0, at, at + mine.length())) {
      comm.allGatherV(part, w, counts);  // in place
    }
  }

  /**
   * ZeRO 1: rank 0 receives every other rank's part of the moments of {@code range} (point to point, in rank order;
   * only the ranks whose shard overlaps it send), so no rank holds more than {@code range}'s moments at once.
   */
  @Override
  public void gatherMoments(ParameterStore store, AdamW optimizer, Range range, Tensor m, Tensor v) {
    if (comm.rank() != 0) {
      if (m != null || v != null) throw new IllegalArgumentException("rank " + comm.rank() + " only sends its moments: pass null");
      Range mine = range.intersect(optimizerShard(store, comm));
      if (mine.isEmpty()) return;
      try (Tensor ms = optimizer.shardMoments(Role.ADAM_M, mine); Tensor vs = optimizer.shardMoments(Role.ADAM_V, mine);
          Tensor hm = ms.to(dev.athanor.memory.Tier.HOST); Tensor hv = vs.to(dev.athanor.memory.Tier.HOST)) {  // off DISK
        comm.send(hm, 0);
        comm.send(hv, 0);
      }
      return;
    }
    optimizer.getShardMoments(range, m, v);
    long n = store.numel();
    for (int r = 1; r < comm.size(); r++) {
      Range part = range.intersect(new Range(Communicator.partStart(n, r, comm.size()), Communicator.partStart(n, r + 1, comm.size())));
      if (part.isEmpty()) continue;
      long a = part.start() - range.start(), b = part.end() - range.start();
      try (Tensor mf = m.view(m.numel()); Tensor vf = v.view(v.numel()); Tensor ms = mf.slice(0, a, b); Tensor vs = vf.slice(0, a, b)) {
        comm.recv(ms, r);
        comm.recv(vs, r);
      }
    }
  }

  @Override
  public int replicas() {
    return comm.size();
  }

  /** Every rank's losses, in the global order: micro-batch {@code k} of rank {@code r} is number {@code k × size + r}. */
  @Override
  public float[] gatherLosses(float[] local) {
    int n = comm.size(), a = local.length;
    if (n == 1) return local;
    float[] all;
    try (Tensor in = Tensor.of(local, a); Tensor out = Tensor.empty(DType.F32, Device.CPU, (long) a * n)) {
      comm.allGather(in, out);
      all = out.toFloatArray();
    }
    float[] ordered = new float[all.length];
    for (int r = 0; r < n; r++) {
      for (int k = 0; k < a; k++) ordered[k * n + r] = all[r * a + k];
    }
    return ordered;
  }

  /**
   * Checks that every rank has the same {@code value} of {@code what} (e.g. a fingerprint of its flags, or its data's
   * size), a collective: throws {@link IllegalArgumentException} on every rank, naming the ranks and their values, when
   * they differ.
   */
  public static void requireSame(Communicator comm, String what, long value) {
    if (comm.size() == 1) return;
    long[] all = new long[comm.size()];
    try (Tensor in = Tensor.of(new int[] {(int) (value >>> 32), (int) value}, 2);
        Tensor out = Tensor.empty(DType.I32, Device.CPU, 2L * comm.size())) {
      comm.allGather(in, out);
      int[] v = out.toIntArray();
      for (int r = 0; r < all.length; r++) all[r] = ((long) v[2 * r] << 32) | (v[2 * r + 1] & 0xffffffffL);
    }
    for (int r = 1; r < all.length; r++) {
      if (all[r] != all[0]) {
        throw new IllegalArgumentException("the ranks differ in " + what + ": rank 0 has " + all[0] + ", rank " + r + " has "
            + all[r] + "; start every rank with the same command line and data");
      }
    }
  }

  /**
   * Whether any rank asks to stop (e.g. it got SIGTERM): a collective, so that every rank stops after the same step.
   */
  public static boolean anyRank(Communicator comm, boolean mine) {
    if (comm.size() == 1) return mine;
    try (Tensor t = Tensor.of(new int[] {mine ? 1 : 0}, 1)) {
      comm.allReduceSum(t);
      return t.getInt(0) != 0;
    }
  }
}
