package dev.athanor.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The Java layouts of the C argument structs ({@link CStruct} over the {@link KernelArgs} records) against the
 * compiler's: every field's name, offset and size and every struct's size, as exported by the JNI table; and
 * every {@link Kernel} found in the native op table with the struct it takes.
 */
class KernelLayoutTest {
  /** struct name -> "sizeof field:offset:size ..." from the native side. */
  private static Map<String, String> nativeStructs() {
    Map<String, String> m = new HashMap<>();
    for (String line : NativeKernels.structs().split("\n")) {
      if (line.isBlank()) continue;
      int sp = line.indexOf(' ');
      m.put(line.substring(0, sp), line.substring(sp + 1));
    }
    return m;
  }

  @Test
  void everyStructMatchesTheCompilersLayout() {
    Map<String, String> natives = nativeStructs();
    Set<String> seen = new HashSet<>();
    for (Class<?> c : KernelArgs.class.getPermittedSubclasses()) {
      @SuppressWarnings("unchecked")
      CStruct s = CStruct.of((Class<? extends KernelArgs>) c);
      String n = natives.get(s.cName);
      assertTrue(n != null, s.cName + " (" + c.getSimpleName() + ") is not exported by the native side: " + natives.keySet());
      StringBuilder java = new StringBuilder().append(s.size);
      for (CStruct.Field f : s.fields) java.append(' ').append(f.name()).append(':').append(f.offset()).append(':').append(f.bytes());
      assertEquals(n, java.toString(), s.cName + " laid out by " + c.getSimpleName());
      seen.add(s.cName);
    }
    assertEquals(natives.keySet(), seen, "every native struct has a record");
  }

  @Test
  void everyKernelIsInTheNativeTable() {
    List<String> ops = List.of(NativeKernels.ops().split("\n"));
    assertEquals(Kernel.values().length, ops.size(), String.join("; ", ops));
    for (Kernel k : Kernel.values()) {
      String want = k.nativeName() + " " + CStruct.of(k.argsType()).cName + " " + CStruct.of(k.argsType()).size;
      assertTrue(ops.contains(want), want + " not in " + ops);
    }
  }

  @Test
  void recordsAreWrittenFieldByField() {
    CStruct s = CStruct.of(KernelArgs.Copy.class);
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment m = arena.allocate(s.size, 8);
      m.fill((byte) 0x55);
      s.write(m, new KernelArgs.Copy(2, 4, new long[] {3, 5}, 0x1000, new long[] {5, 1}, 0x2000, new long[] {1, 3}));
      assertEquals(2, m.get(ValueLayout.JAVA_INT, 0));
      assertEquals(4, m.get(ValueLayout.JAVA_INT, 4));
      assertEquals(3, m.get(ValueLayout.JAVA_LONG, 8));
      assertEquals(5, m.get(ValueLayout.JAVA_LONG, 16));
      assertEquals(0, m.get(ValueLayout.JAVA_LONG, 24), "unused dims are zero");
      assertEquals(0x1000, m.get(ValueLayout.JAVA_LONG, 72));
      assertEquals(0x2000, m.get(ValueLayout.JAVA_LONG, 144));
      assertEquals(3, m.get(ValueLayout.JAVA_LONG, 160));
    }
    CStruct g = CStruct.of(KernelArgs.Gemm.class);
    try (Arena arena = Arena.ofConfined()) {
      MemorySegment m = arena.allocate(g.size, 8);
      g.write(m, new KernelArgs.Gemm(1, 2, 3, 4, 5, 6, true, false, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1.5f, -2f,
          KernelArgs.GEMM_EPI_GELU_BACKWARD, 17));
      Map<String, Long> off = new HashMap<>();
      for (CStruct.Field f : g.fields) off.put(f.name(), f.offset());
      assertEquals(1, m.get(ValueLayout.JAVA_INT, off.get("trans_a")));
      assertEquals(0, m.get(ValueLayout.JAVA_INT, off.get("trans_b")));
      assertEquals(16, m.get(ValueLayout.JAVA_LONG, off.get("bias")));
      assertEquals(-2f, m.get(ValueLayout.JAVA_FLOAT, off.get("beta")));
      assertEquals(2, m.get(ValueLayout.JAVA_INT, off.get("epilogue")));
      assertEquals(17, m.get(ValueLayout.JAVA_LONG, off.get("aux")));
    }
    assertEquals("dtype_ab", CStruct.snake("dtypeAb"));
    assertEquals("q_sb", CStruct.snake("qSb"));
  }

  @Test
  void aWrongStructIsRejectedByName() {
    IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class,
        () -> ExecutionContext.current(Device.CPU).run(Kernel.GEMM, new KernelArgs.Memset(0, 0, 0)));
    assertTrue(e.getMessage().contains("GEMM takes Gemm, got Memset"), e.getMessage());
  }
}
