package dev.athanor.dist;

import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.lang.reflect.Proxy;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * {@code size} ranks as threads of one JVM, for tests without MPI: a communicator per rank whose sums run in rank order,
 * left to right in F32 (as the deterministic MPI communicator's do), through shared arrays, with point-to-point
 * mailboxes per pair of ranks. Used by the tensor-parallel emulation, the dp x tp norm test and the pipeline test.
 */
public final class ThreadRanks {
  final int size;
  final CyclicBarrier barrier;
  final Object[] slots;

  public ThreadRanks(int size) {
    this.size = size;
    this.barrier = new CyclicBarrier(size);
    this.slots = new Object[size];
  }

  private void await() {
    try {
      barrier.await(60, TimeUnit.SECONDS);
    } catch (Exception e) {
      throw new IllegalStateException("a rank thread did not reach the collective", e);
    }
  }

  private final Map<Integer, BlockingQueue<float[]>> mail = new ConcurrentHashMap<>();

  /** The F32 messages from rank {@code from} to rank {@code to}, in the order sent. */
  private BlockingQueue<float[]> mailbox(int from, int to) {
    return mail.computeIfAbsent(from * size + to, k -> new LinkedBlockingQueue<>());
  }

  /**
   * Rank {@code r}'s communicator (allReduceSum, allGather, allGatherV, reduceScatterAccumulateV, broadcast, send, recv,
   * barrier, rank, size; anything else throws).
   */
  public Communicator member(int r) {
    return (Communicator) Proxy.newProxyInstance(Communicator.class.getClassLoader(), new Class<?>[] {Communicator.class},
        (proxy, method, args) -> switch (method.getName()) {
          case "rank" -> r;
          case "size" -> size;
          case "mode" -> ReduceMode.DETERMINISTIC;
          case "describe" -> "thread rank " + r + " of " + size;
          case "close", "barrier" -> {
            await();
            yield null;
          }
          case "allReduceSum" -> {
            allReduceSum(r, (Tensor) args[0]);
            yield null;
          }
          case "allGather" -> {
            allGather(r, (Tensor) args[0], (Tensor) args[1]);
            yield null;
          }
          case "allGatherV" -> {  // every rank's part in rank order, whatever its length
            allGather(r, (Tensor) args[0], (Tensor) args[1]);
            yield null;
          }
          case "reduceScatterAccumulateV" -> {
            reduceScatterAccumulateV(r, (Tensor) args[0], (Tensor) args[1], (long[]) args[2], (Boolean) args[3]);
            yield null;
          }
          case "broadcast" -> {
          broadcast(r, (Tensor) args[0], (Integer) args[1]);
          yield null;
        }
        case "send" -> {
            mailbox(r, (Integer) args[1]).put(((Tensor) args[0]).toFloatArray());
            yield null;
          }
          case "recv" -> {
            float[] got = mailbox((Integer) args[1], r).poll(60, TimeUnit.SECONDS);
            if (got == null) throw new IllegalStateException("rank " + args[1] + " sent rank " + r + " nothing");
            ((Tensor) args[0]).copyFrom(got);
            yield null;
          }
          default -> throw new UnsupportedOperationException(method.getName());
        });
  }

  private void allReduceSum(int r, Tensor t) {
    boolean ints = t.dtype() == DType.I32;
    slots[r] = ints ? t.toIntArray() : t.toFloatArray();
    await();
    if (ints) {
      int[] acc = ((int[]) slots[0]).clone();
      for (int q = 1; q < size; q++) for (int i = 0; i < acc.length; i++) acc[i] += ((int[]) slots[q])[i];
      await();
      t.copyFrom(acc);
    } else {
      float[] acc = ((float[]) slots[0]).clone();  // rank order, left to right, in F32
      for (int q = 1; q < size; q++) for (int i = 0; i < acc.length; i++) acc[i] += ((float[]) slots[q])[i];
      await();
      t.copyFrom(acc);
    }
    await();
  }

  private void allGather(int r, Tensor in, Tensor out) {
    boolean ints = in.dtype() == DType.I32;
    slots[r] = ints ? in.toIntArray() : in.toFloatArray();
    await();
    if (ints) {
      int[] all = new int[(int) out.numel()];
      for (int q = 0, at = 0; q < size; at += ((int[]) slots[q]).length, q++) {
        System.arraycopy(slots[q], 0, all, at, ((int[]) slots[q]).length);
      }
      out.copyFrom(all);
    } else {
      float[] all = new float[(int) out.numel()];
      for (int q = 0, at = 0; q < size; at += ((float[]) slots[q]).length, q++) {
        System.arraycopy(slots[q], 0, all, at, ((float[]) slots[q]).length);
      }
      out.copyFrom(all);
    }
    await();
  }

  /**
   * This rank's part ({@code counts[r]} F32 elements after the earlier ranks' parts) of every rank's {@code in}, folded in
   * rank order into {@code acc}: {@code ((acc + in_0) + in_1) + ...}, or without the accumulator when {@code first}.
   */
  private void reduceScatterAccumulateV(int r, Tensor in, Tensor acc, long[] counts, boolean first) {
    slots[r] = in.toFloatArray();
    await();
    int at = 0;
    for (int q = 0; q < r; q++) at += (int) counts[q];
    float[] sum = first ? java.util.Arrays.copyOfRange((float[]) slots[0], at, at + (int) counts[r]) : acc.toFloatArray();
    for (int q = first ? 1 : 0; q < size; q++) for (int i = 0; i < sum.length; i++) sum[i] += ((float[]) slots[q])[at + i];
    await();
    acc.copyFrom(sum);
    await();
  }

  /** Root's tensor on every rank. */
  private void broadcast(int r, Tensor t, int root) {
    boolean ints = t.dtype() == DType.I32;
    slots[r] = ints ? t.toIntArray() : t.toFloatArray();
    await();
    if (ints) {
      t.copyFrom(((int[]) slots[root]).clone());
    } else {
      t.copyFrom(((float[]) slots[root]).clone());
    }
    await();
  }
}
