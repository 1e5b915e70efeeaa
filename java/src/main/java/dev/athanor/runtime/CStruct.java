package dev.athanor.runtime;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.invoke.VarHandle;
import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The C layout of a {@link KernelArgs} record and a writer of its values into native memory. Fields follow
 * the record's components in order with the C alignment rules of x86-64 (each scalar aligned to its size, the
 * struct to its largest member). The writer is one composed method handle per record type, so writing a
 * struct is a sequence of plain stores without reflection or boxing.
 */
final class CStruct {
  /** One field: its C name (snake_case of the component), offset and size in bytes. */
  record Field(String name, long offset, long bytes) {}

  private static final ConcurrentHashMap<Class<?>, CStruct> CACHE = new ConcurrentHashMap<>();
  private static final MethodHandle PUT_ARRAY;

  static {
    try {
      PUT_ARRAY = MethodHandles.lookup().findStatic(CStruct.class, "putArray",
          MethodType.methodType(void.class, MemorySegment.class, long.class, long[].class));
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  final String cName;
  final long size;
  final List<Field> fields;
  private final MethodHandle writer; // (MemorySegment, KernelArgs) void

  private CStruct(String cName, long size, List<Field> fields, MethodHandle writer) {
    this.cName = cName;
    this.size = size;
    this.fields = fields;
    this.writer = writer;
  }

  static CStruct of(Class<? extends KernelArgs> type) {
    return CACHE.computeIfAbsent(type, CStruct::build);
  }

  /** Writes {@code args} at the start of {@code segment} (at least {@link #size} bytes). */
  void write(MemorySegment segment, KernelArgs args) {
    try {
      writer.invokeExact(segment, args);
    } catch (RuntimeException | Error e) {
      throw e;
    } catch (Throwable t) {
      throw new IllegalStateException(t);
    }
  }

  private static CStruct build(Class<?> type) {
    KernelArgs.C c = type.getAnnotation(KernelArgs.C.class);
    if (c == null || !type.isRecord()) throw new IllegalArgumentException(type + " is not a KernelArgs record with @C");
    MethodHandles.Lookup lookup = MethodHandles.lookup();
    MethodType writerType = MethodType.methodType(void.class, MemorySegment.class, KernelArgs.class);
    MethodHandle all = MethodHandles.empty(writerType);
    List<Field> fields = new ArrayList<>();
    long offset = 0, align = 1;
    for (RecordComponent rc : type.getRecordComponents()) {
      Class<?> t = rc.getType();
      long bytes = t == long[].class ? 8L * KernelArgs.MAX_RANK : t == long.class ? 8 : 4;
      long a = t == long[].class || t == long.class ? 8 : 4;
      if (t != long.class && t != int.class && t != boolean.class && t != float.class && t != long[].class) {
        throw new IllegalArgumentException(type.getSimpleName() + "." + rc.getName() + " has unsupported type " + t);
      }
      offset = (offset + a - 1) / a * a;
      align = Math.max(align, a);
      fields.add(new Field(snake(rc.getName()), offset, bytes));
      MethodHandle get;
      try {
        get = lookup.unreflect(rc.getAccessor());
      } catch (IllegalAccessException e) {
        throw new IllegalStateException(e);
      }
      MethodHandle put;
      if (t == long[].class) {
        put = PUT_ARRAY;
      } else {
        ValueLayout layout = t == long.class ? ValueLayout.JAVA_LONG_UNALIGNED
            : t == float.class ? ValueLayout.JAVA_FLOAT_UNALIGNED : ValueLayout.JAVA_INT_UNALIGNED;
        put = layout.varHandle().toMethodHandle(VarHandle.AccessMode.SET); // (MemorySegment, long offset, value)
        if (t == boolean.class) get = MethodHandles.explicitCastArguments(get, get.type().changeReturnType(int.class));
      }
      put = MethodHandles.insertArguments(put, 1, offset); // (MemorySegment, value)
      MethodHandle field = MethodHandles.filterArguments(put, 1, get.asType(get.type().changeParameterType(0, KernelArgs.class)));
      all = MethodHandles.foldArguments(field, all); // the fields so far, then this one
      offset += bytes;
    }
    long size = (offset + align - 1) / align * align;
    return new CStruct(c.value(), size, Collections.unmodifiableList(fields), all);
  }

  @SuppressWarnings("unused") // via PUT_ARRAY
  private static void putArray(MemorySegment s, long offset, long[] values) {
    if (values.length > KernelArgs.MAX_RANK) {
      throw new IllegalArgumentException("array of " + values.length + " values, at most " + KernelArgs.MAX_RANK);
    }
    for (int i = 0; i < KernelArgs.MAX_RANK; i++) {
      s.set(ValueLayout.JAVA_LONG_UNALIGNED, offset + 8L * i, i < values.length ? values[i] : 0L);
    }
  }

  /** "dtypeAb" -> "dtype_ab", "qSb" -> "q_sb". */
  static String snake(String camel) {
    StringBuilder sb = new StringBuilder(camel.length() + 4);
    for (char ch : camel.toCharArray()) {
      if (Character.isUpperCase(ch)) sb.append('_').append(Character.toLowerCase(ch));
      else sb.append(ch);
    }
    return sb.toString();
  }

  @Override
  public String toString() {
    return cName + " (" + size + " bytes) " + fields;
  }
}
