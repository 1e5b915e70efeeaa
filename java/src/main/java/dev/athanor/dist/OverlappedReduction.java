package dev.athanor.dist;

import dev.athanor.nn.BlockHooks;
import dev.athanor.nn.Transformer;
import dev.athanor.ops.Ops;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.Role;
import dev.athanor.params.Unit;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Plain data parallel's gradient all-reduce (ZeRO 0 and 1) overlapped with the backward pass, in buckets: during the
 * backward of a step's last micro-batch ({@link #arm}), as soon as the model's hooks report a unit's gradient complete
 * ({@code afterGradients}: the head first, the embeddings last), the unit is added to the step's gradient (with
 * accumulation: {@code acc + g} over the unit's elements, the kernel and order of the whole-gradient add) and, once
 * every unit of its {@link GradientBuckets bucket} is, the bucket's flat range of the step's gradient is all-reduced
 * ({@link Communicator#allReduceSum}) on this object's communication thread while the backward goes on with the next
 * units. {@link #await} (before clipping) waits for every bucket.
 *
 * <p>Exactness: the deterministic all-reduce sums each element in rank order, whatever range it is called on, and the
 * per-unit add is element by element, so the step's gradient has the bits of the reduction made after the backward
 * (fast mode's MPI_Allreduce may choose other algorithms for other sizes: it promises no bits either way).
 *
 * <p>Threads: one communication thread (a single-thread executor, a daemon) makes this object's MPI calls; the training
 * thread makes none while a bucket is pending (its next collective, the loss gather, comes after {@link #await}), and
 * {@link MpiCommunicator} serializes its calls process-wide besides, as MPI_THREAD_SERIALIZED requires. A failure on
 * the communication thread is thrown by {@link #await} on the training thread, naming this rank and the bucket; the
 * buckets queued behind it are cancelled. A peer that dies mid-step leaves the communication thread blocked in MPI as
 * it would leave the training thread without overlap: mpirun ends the job and names the lost rank.
 *
 * <p>Applies to the CPU backend with the whole model in each process and the gradients in memory ({@link #supports}).
 * On GPUs, {@link StreamOverlappedReduction} enqueues each bucket's all-reduce on a communication stream instead. Not
 * thread-safe: the training thread calls everything but the reductions.
 */
public final class OverlappedReduction implements BucketedReduction {
  /** The default bucket size: 25 MiB of gradient. */
  public static final long DEFAULT_BUCKET_BYTES = 25L << 20;

  private final Communicator comm;
  private final Transformer model;
  private final ParameterStore store;
  private final BlockHooks before;
  private final GradientBuckets plan;
  private final ExecutorService thread;
  private final int[] pending;  // per bucket: its units whose gradient is not yet complete in the armed backward
  private final List<Future<?>> inFlight = new ArrayList<>();  // per submitted bucket, in bucket order
  private final AtomicLong busyNanos = new AtomicLong();
  private long waitNanos, reduced;
  private Role microGrad, stepGrad;  // non-null while armed
  private boolean closed;

  private OverlappedReduction(Transformer model, Communicator comm, long bucketBytes) {
    this.model = model;
    this.comm = comm;
    this.store = model.parameters();
    this.before = model.hooks();
    this.plan = GradientBuckets.of(store.units(), store.flat(Role.GRAD).dtype().byteSize(), bucketBytes);
    this.pending = new int[plan.buckets().size()];
    this.thread = CommThread.start(comm.rank());
  }

  /**
   * Whether {@link #attach} can take {@code model}: the CPU backend (host gradients), the whole model in one process
   * (no tensor-parallel split, no pipeline stage: nothing else communicates during the backward) and gradients in
   * memory (not paged by offload or ZeRO 2 and 3).
   */
  public static boolean supports(Transformer model) {
    ParameterStore s = model.parameters();
    return model.device().isCpu() && !model.tensorParallel().split() && model.stage().embedding() && model.stage().head()
        && !s.isPaged(Role.GRAD) && s.has(Role.GRAD);
  }

  /**
   * Joins {@code model}'s hooks with buckets of at most {@code bucketBytes} of gradient, reducing over {@code comm} (a
   * data-parallel group; every rank calls this with the same model and size). Needs {@link #supports}. Closing it puts
   * the model's hooks back and stops the thread.
   */
  public static OverlappedReduction attach(Transformer model, Communicator comm, long bucketBytes) {
    Objects.requireNonNull(model, "model");
    Objects.requireNonNull(comm, "comm");
    if (bucketBytes < 1) throw new IllegalArgumentException("bucket size " + bucketBytes + " bytes must be >= 1");
    if (!supports(model)) {
      throw new IllegalArgumentException("the overlapped gradient reduction needs the CPU backend, the whole model in one "
          + "process and its gradients in memory; this model is on " + model.device()
          + (model.tensorParallel().split() ? ", split by tensor parallelism" : "")
          + (!model.stage().embedding() || !model.stage().head() ? ", a pipeline stage" : "")
          + (model.parameters().isPaged(Role.GRAD) ? ", gradients paged" : ""));
    }
    OverlappedReduction o = new OverlappedReduction(model, comm, bucketBytes);
    model.setHooks(BlockHooks.both(o.before, o));
    return o;
  }

  /** The buckets. */
  public GradientBuckets buckets() {
    return plan;
  }

  /**
   * The next backward (a step's last micro-batch) reduces the step's gradient {@code stepGrad} bucket by bucket; with
   * {@code stepGrad} other than {@code microGrad} (gradient accumulation) each unit's {@code microGrad} is first added
   * to it ({@code step = step + micro}).
   */
  public void arm(Role microGrad, Role stepGrad) {
    if (closed) throw new IllegalStateException("the overlapped reduction is closed");
    if (this.stepGrad != null || !inFlight.isEmpty()) throw new IllegalStateException("a step's reduction is still pending");
    this.microGrad = Objects.requireNonNull(microGrad, "microGrad");
    this.stepGrad = Objects.requireNonNull(stepGrad, "stepGrad");
    for (GradientBuckets.Bucket b : plan.buckets()) pending[b.index()] = b.units();
  }

  /** Whether a backward was armed and its reduction not yet awaited. */
  public boolean armed() {
    return stepGrad != null;
  }

  @Override
  public void afterGradients(Unit unit) {
    if (stepGrad == null) return;
    if (microGrad != stepGrad) {
      try (Tensor acc = store.slice(stepGrad, unit.elements()); Tensor g = store.slice(microGrad, unit.elements())) {
        Ops.add(acc, g, acc);
      }
    }
    int k = plan.bucketOf()[unit.index()];
    if (--pending[k] == 0) submit(plan.buckets().get(k));
  }

  private void submit(GradientBuckets.Bucket b) {
    Tensor part = store.slice(stepGrad, b.elements()).detach();  // closed by the task, on the communication thread
    try {
      inFlight.add(thread.submit(() -> {
        long t0 = System.nanoTime();
        try {
          comm.allReduceSum(part);
        } finally {
          part.close();
          busyNanos.addAndGet(System.nanoTime() - t0);
        }
      }));
    } catch (RuntimeException e) {
      part.close();
      throw e;
    }
  }

  /**
   * Waits for every bucket of the armed backward (in the order they were started) and disarms. Throws {@link
   * CommunicatorException} naming this rank and the bucket when a reduction failed (the ones queued behind it are
   * cancelled), and {@link IllegalStateException} when the backward did not complete every unit.
   */
  public void await() {
    if (stepGrad == null) throw new IllegalStateException("no backward was armed");
    long t0 = System.nanoTime();
    try {
      for (int k = 0; k < inFlight.size(); k++) {
        try {
          inFlight.get(k).get();
        } catch (ExecutionException e) {
          throw failure(plan.buckets().get(k), e.getCause());
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException("rank " + comm.rank() + " of " + comm.size() + ": interrupted while waiting for "
              + "the gradient reduction", e);
        }
      }
      for (GradientBuckets.Bucket b : plan.buckets()) {
        if (pending[b.index()] != 0) {
          throw new IllegalStateException("the backward did not complete every unit of " + describe(b) + " (" + pending[b.index()]
              + " left); its gradient was not reduced");
        }
      }
      reduced += inFlight.size();
    } finally {
      waitNanos += System.nanoTime() - t0;
      discard();
    }
  }

  private RuntimeException failure(GradientBuckets.Bucket b, Throwable cause) {
    if (cause instanceof Error err) throw err;
    return new CommunicatorException("rank " + comm.rank() + " of " + comm.size() + ": the all-reduce of " + describe(b)
        + " on the communication thread failed: " + cause.getMessage(), cause);
  }

  private String describe(GradientBuckets.Bucket b) {
    List<Unit> us = store.units();
    String units = b.units() == 1 ? us.get(b.firstUnit()).name()
        : us.get(b.firstUnit()).name() + " .. " + us.get(b.endUnit() - 1).name();
    return "gradient bucket " + b.index() + " of " + plan.buckets().size() + " (" + units + ", " + b.elements().length()
        + " elements)";
  }

  /**
   * Forgets the armed backward (a step that failed part-way): the buckets not yet started are cancelled, one running is
   * left to finish (it does not wait for it).
   */
  public void discard() {
    for (Future<?> f : inFlight) f.cancel(false);
    inFlight.clear();
    microGrad = null;
    stepGrad = null;
  }

  /**
   * Totals since creation: the training thread's time blocked in {@link #await} (the communication the backward did not
   * hide), the communication thread's time in all-reduces, and the buckets reduced.
   */
  public OverlapStats stats() {
    return new OverlapStats(waitNanos, busyNanos.get(), reduced);
  }

  /** Stops the communication thread (a reduction still running is left to a daemon thread) and restores the hooks. */
  @Override
  public void close() {
    if (closed) return;
    closed = true;
    discard();
    thread.shutdownNow();
    try {
      thread.awaitTermination(10, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      model.setHooks(before);
    }
  }
}
