package dev.athanor.runtime;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;

/**
 * The ops of the C ABI: {@code ath_cpu_<name>} and {@code ath_cuda_<name>} for {@link #nativeName()}, each taking
 * one {@link KernelArgs} struct. Run one with {@link ExecutionContext#run(Kernel, KernelArgs)}: the struct is
 * written into a per-thread native buffer and one JNI call ({@code native/jni/jni_NativeKernels.cpp}) dispatches
 * through the native op table to the CPU or CUDA entry point. Adding an op: a record in {@link KernelArgs} (when
 * its struct is new), a constant here, a line in the native table.
 */
public enum Kernel {
  GEMM(KernelArgs.Gemm.class),
  ATTENTION_FWD(KernelArgs.Attention.class),
  ATTENTION_BWD(KernelArgs.Attention.class),
  LAYERNORM_FWD(KernelArgs.Norm.class),
  LAYERNORM_BWD(KernelArgs.Norm.class),
  RMSNORM_FWD(KernelArgs.Norm.class),
  RMSNORM_BWD(KernelArgs.Norm.class),
  ACTIVATION_FWD(KernelArgs.Activation.class),
  ACTIVATION_BWD(KernelArgs.Activation.class),
  CROSS_ENTROPY_FWD(KernelArgs.CrossEntropy.class),
  CROSS_ENTROPY_BWD(KernelArgs.CrossEntropy.class),
  EMBEDDING_FWD(KernelArgs.Embedding.class),
  EMBEDDING_BWD(KernelArgs.Embedding.class),
  ROPE(KernelArgs.Rope.class),
  ELEMENTWISE(KernelArgs.Elementwise.class),
  REDUCE(KernelArgs.Reduce.class),
  ADAMW(KernelArgs.Adamw.class),
  RAND(KernelArgs.Rand.class),
  SAMPLE(KernelArgs.Sample.class),
  COPY(KernelArgs.Copy.class),
  MEMSET(KernelArgs.Memset.class),
  TRAIN_SCALARS(KernelArgs.TrainScalars.class);

  /** Bytes of the per-thread argument buffer (the largest struct is ~250 bytes). */
  static final int BUFFER_BYTES = 1024;
  private static final ThreadLocal<MemorySegment> BUFFER =
      ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(BUFFER_BYTES, 16));

  private final Class<? extends KernelArgs> argsType;

  Kernel(Class<? extends KernelArgs> argsType) {
    this.argsType = argsType;
  }

  /** The struct this op takes. */
  public Class<? extends KernelArgs> argsType() {
    return argsType;
  }

  /** "gemm", "attention_fwd", ...: the op is {@code ath_cpu_<name>} / {@code ath_cuda_<name>}. */
  public String nativeName() {
    return name().toLowerCase(Locale.ROOT);
  }

  /**
   * Runs the op once and returns its {@code ath_status}: on the CPU when {@code device < 0}, else enqueued in
   * the {@code ath_cuda_ctx} at {@code ctx}. The caller turns a non-OK status into an exception.
   */
  int call(KernelArgs args, int device, long ctx) {
    if (args.getClass() != argsType) {
      throw new IllegalArgumentException(this + " takes " + argsType.getSimpleName() + ", got " + args.getClass().getSimpleName());
    }
    MemorySegment buffer = BUFFER.get();
    CStruct.of(argsType).write(buffer, args);
    return NativeKernels.run(Table.INDEX[ordinal()], device, ctx, buffer.address());
  }

  /** The native op table, read once and checked against the Java structs (names and sizes). */
  private static final class Table {
    static final int[] INDEX = resolve();

    private static int[] resolve() {
      Map<String, String[]> ops = new HashMap<>();
      String[] lines = NativeKernels.ops().split("\n");
      for (int i = 0; i < lines.length; i++) {
        String[] f = lines[i].trim().split(" ");
        if (f.length == 3) ops.put(f[0], new String[] {String.valueOf(i), f[1], f[2]});
      }
      int[] index = new int[values().length];
      for (Kernel k : values()) {
        String[] e = ops.get(k.nativeName());
        CStruct s = CStruct.of(k.argsType);
        if (e == null) throw new IllegalStateException("libathanor has no op " + k.nativeName() + " (its table: " + ops.keySet() + ")");
        if (!e[1].equals(s.cName) || Long.parseLong(e[2]) != s.size) {
          throw new IllegalStateException("op " + k.nativeName() + " takes " + e[1] + " of " + e[2] + " bytes natively but "
              + k.argsType.getSimpleName() + " lays out " + s.cName + " of " + s.size + " bytes: rebuild libathanor");
        }
        index[k.ordinal()] = Integer.parseInt(e[0]);
      }
      return index;
    }
  }
}
