package dev.athanor.dist;

import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.Transformer;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.tensor.Tensor;
import java.util.Objects;

/**
 * Plain data parallel's gradient all-reduce (ZeRO 0) overlapped with the backward pass on a GPU, in buckets, on a
 * communication stream: during the backward of a step's last micro-batch ({@link #arm}), as soon as the model's hooks
 * report a unit's gradient complete ({@code afterGradients}: the head first, the embeddings last), the unit is added to
 * the step's gradient on the compute stream (with accumulation: {@code acc + g} over the unit's elements, the kernel and
 * order of the whole-gradient add) and, once every unit of its {@link GradientBuckets bucket} is, an event is recorded
 * on the compute stream, the communication stream waits for it, and the bucket's flat range of the step's gradient is
 * all-reduced ({@link Communicator#allReduceSum}) with the communication stream current: {@link NcclCommunicator}
 * enqueues its calls, and in deterministic mode {@link GatheredFold}'s gathers and adds, on the current context's
 * stream. The training thread makes these calls itself (NCCL's are asynchronous: no extra thread) and goes on
 * enqueueing the backward. {@link #await} (before clipping) makes the compute stream wait for an event recorded at the
 * communication stream's end. Nothing in the step synchronizes the host; the buckets run on the device while the
 * backward's later kernels run.
 *
 * <p>Exactness: the deterministic sum ({@link GatheredFold}) forms each element as {@code x_0 + x_1 + ...} in F32, left
 * to right, from that element's gathered copies alone, whatever range and pieces it is called on: a fold over a bucket
 * equals the fold over the whole gradient on those elements, and the per-unit add is element by element; so the step's
 * gradient has the bits of the reduction made after the backward. Fast mode's ncclAllReduce may choose other
 * algorithms for other sizes: it promises no bits either way.
 *
 * <p>Ordering is all the correctness there is: each bucket's reduction reads the gradient only after the event of its
 * last unit (and that unit's add), the buckets run in order on the one communication stream, and everything after
 * {@link #await} (clipping's norm, the update, the next step's zeroing) runs after the last bucket. A step that fails
 * part-way ({@link #discard}) still makes the compute stream wait for the buckets already enqueued, so the next step
 * does not rewrite a gradient being reduced. The stream operations are a {@link ReductionStreams} ({@link
 * CommunicationStream} on a device; a test records them).
 *
 * <p>Failures: a collective that fails when enqueued is thrown from the backward, naming the rank and the bucket; an
 * asynchronous NCCL failure surfaces as a CUDA error at a later synchronization, as without overlap. With a
 * communicator that stages CUDA tensors through host memory ({@code --collectives mpi}) each bucket's copies wait for
 * the device on the training thread: the bits are the same, but nothing overlaps.
 *
 * <p>{@link #stats}: {@code waitNanos} is the device time the compute stream stood waiting for the communication stream
 * at {@link #await} (CUDA timing events, read after the step), {@code busyNanos} the host time spent enqueueing the
 * buckets' collectives. Applies to a CUDA model held whole in each process with its gradients in memory ({@link
 * #supports}). Not thread-safe: the training thread calls everything.
 */
public final class StreamOverlappedReduction implements BucketedReduction {
  private final Communicator comm;
  private final Transformer model;
  private final ParameterStore store;
  private final BlockHooks before;
  private final GradientBuckets plan;
  private final BucketTally tally;
  private final ReductionStreams streams;
  private int enqueued;          // buckets enqueued in the armed backward
  private long reduced, busyNanos;
  private Role microGrad, stepGrad;  // non-null while armed
  private RuntimeException unordered;  // discard could not order the compute stream after the buckets
  private boolean closed;

  private StreamOverlappedReduction(Transformer model, Communicator comm, long bucketBytes, ReductionStreams streams) {
    this.model = model;
    this.comm = comm;
    this.store = model.parameters();
    this.before = model.hooks();
    this.plan = GradientBuckets.of(store.units(), store.flat(Role.GRAD).dtype().byteSize(), bucketBytes);
    this.tally = new BucketTally(plan, store.units());
    this.streams = streams;
  }

  /**
   * Whether {@link #attach} can take {@code model}: a CUDA model, whole in this process (no tensor-parallel split, no
   * pipeline stage) with its gradients in memory (not paged).
   */
  public static boolean supports(Transformer model) {
    return model.device().isCuda() && wholeWithGradients(model);
  }

  private static boolean wholeWithGradients(Transformer model) {
    ParameterStore s = model.parameters();
    return !model.tensorParallel().split() && model.stage().embedding() && model.stage().head() && !s.isPaged(Role.GRAD)
        && s.has(Role.GRAD);
  }

  /**
   * Joins {@code model}'s hooks with buckets of at most {@code bucketBytes} of gradient, reducing over {@code comm} on a
   * new communication stream of the model's device (every rank calls this with the same model and size). Needs {@link
   * #supports}. Closing it puts the model's hooks back and releases the stream.
   */
  public static StreamOverlappedReduction attach(Transformer model, Communicator comm, long bucketBytes) {
    Objects.requireNonNull(model, "model");
    if (!supports(model)) {
      throw new IllegalArgumentException("the stream-overlapped gradient reduction needs a CUDA model held whole in this "
          + "process with its gradients in memory; this model is on " + model.device() + describeMisfit(model));
    }
    return attach(model, comm, bucketBytes, new CommunicationStream(model.device()));
  }

  /** As {@link #attach(Transformer, Communicator, long)} on {@code streams} (any device; closed with the result). */
  static StreamOverlappedReduction attach(Transformer model, Communicator comm, long bucketBytes, ReductionStreams streams) {
    Objects.requireNonNull(streams, "streams");
    try {
      Objects.requireNonNull(model, "model");
      Objects.requireNonNull(comm, "comm");
      if (bucketBytes < 1) throw new IllegalArgumentException("bucket size " + bucketBytes + " bytes must be >= 1");
      if (!wholeWithGradients(model)) {
        throw new IllegalArgumentException("the overlapped gradient reduction needs the whole model in this process with "
            + "its gradients in memory; this model: " + describeMisfit(model).substring(2));
      }
      StreamOverlappedReduction o = new StreamOverlappedReduction(model, comm, bucketBytes, streams);
      model.setHooks(BlockHooks.both(o.before, o));
      return o;
    } catch (RuntimeException e) {
      streams.close();
      throw e;
    }
  }

  /** What keeps {@code model} from {@link #wholeWithGradients}: "" or ", split by tensor parallelism, ...". */
  private static String describeMisfit(Transformer model) {
    ParameterStore s = model.parameters();
    return (model.tensorParallel().split() ? ", split by tensor parallelism" : "")
        + (!model.stage().embedding() || !model.stage().head() ? ", a pipeline stage" : "")
        + (s.isPaged(Role.GRAD) ? ", its gradients paged" : "") + (!s.has(Role.GRAD) ? ", its gradients not allocated" : "");
  }

  @Override
  public GradientBuckets buckets() {
    return plan;
  }

  @Override
  public void arm(Role microGrad, Role stepGrad) {
    if (closed) throw new IllegalStateException("the overlapped reduction is closed");
    if (unordered != null) {
      throw new IllegalStateException("rank " + comm.rank() + " of " + comm.size() + ": after a failed step the compute "
          + "stream could not be made to wait for the gradient buckets already enqueued: " + unordered.getMessage(), unordered);
    }
    if (this.stepGrad != null || enqueued > 0) throw new IllegalStateException("a step's reduction is still pending");
    this.microGrad = Objects.requireNonNull(microGrad, "microGrad");
    this.stepGrad = Objects.requireNonNull(stepGrad, "stepGrad");
    tally.reset();
  }

  @Override
  public boolean armed() {
    return stepGrad != null;
  }

  @Override
  public void afterGradients(Unit unit) {
    if (stepGrad == null) return;
    BucketTally.accumulate(store, microGrad, stepGrad, unit);  // on the compute stream, before the bucket's event
    GradientBuckets.Bucket b = tally.complete(unit);
    if (b != null) enqueue(b);
  }

  /** The bucket's all-reduce on the communication stream, after the compute stream's work so far. */
  private void enqueue(GradientBuckets.Bucket b) {
    long t0 = System.nanoTime();
    try (Tensor part = store.slice(stepGrad, b.elements())) {
      streams.commWaitsForCompute();
      enqueued++;  // counted before the call: a failure inside may have enqueued part of it
      streams.onComm(() -> comm.allReduceSum(part));
    } catch (RuntimeException e) {
      throw new CommunicatorException("rank " + comm.rank() + " of " + comm.size() + ": the all-reduce of "
          + tally.describe(b) + " could not be enqueued on the communication stream: " + e.getMessage(), e);
    } finally {
      busyNanos += System.nanoTime() - t0;
    }
  }

  /**
   * Makes the compute stream wait for every bucket of the armed backward (on the device: the host does not block) and
   * disarms. Throws {@link IllegalStateException} when the backward did not complete every unit.
   */
  @Override
  public void await() {
    if (stepGrad == null) throw new IllegalStateException("no backward was armed");
    try {
      if (enqueued > 0) streams.computeWaitsForComm();
      tally.requireComplete();
      reduced += enqueued;
    } finally {
      enqueued = 0;
      microGrad = null;
      stepGrad = null;
    }
  }

  /**
   * Forgets the armed backward (a step that failed part-way): the compute stream still waits for the buckets already
   * enqueued (they run; nothing cancels device work). Does not throw: a failure to order the streams is kept and thrown
   * by the next {@link #arm}.
   */
  @Override
  public void discard() {
    try {
      if (enqueued > 0) streams.computeWaitsForComm();
    } catch (RuntimeException e) {
      if (unordered == null) unordered = e;
    } finally {
      enqueued = 0;
      microGrad = null;
      stepGrad = null;
    }
  }

  /**
   * Totals since creation: the device time the compute stream waited for the buckets after the backward (read from
   * timing events; may wait for the last step's communication to end), the host time enqueueing them, and the buckets
   * reduced.
   */
  @Override
  public OverlapStats stats() {
    return new OverlapStats(streams.waitedNanos(), busyNanos, reduced);
  }

  /** Orders the compute stream after any bucket still enqueued, releases the stream and restores the hooks. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    discard();  // never throws
    try {
      streams.close();
    } finally {
      model.setHooks(before);
    }
  }
}
