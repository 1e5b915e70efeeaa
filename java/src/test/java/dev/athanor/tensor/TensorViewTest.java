package dev.athanor.tensor;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.runtime.Device;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Views address the same storage; offsets checked against hand-computed values. */
class TensorViewTest {
  private Scope scope;
  private Tensor t; // (2, 3, 4) holding 0..23, strides (12, 4, 1)

  @BeforeEach
  void setUp() {
    scope = Scope.open();
    float[] data = new float[24];
    for (int i = 0; i < 24; i++) data[i] = i;
    t = Tensor.of(data, 2, 3, 4);
  }

  @AfterEach
  void tearDown() {
    scope.close();
  }

  @Test
  void basicMetadata() {
    assertArrayEquals(new long[] {2, 3, 4}, t.shape());
    assertArrayEquals(new long[] {12, 4, 1}, t.strides());
    assertEquals(3, t.rank());
    assertEquals(24, t.numel());
    assertEquals(96, t.byteSize());
    assertEquals(4, t.size(-1));
    assertEquals(2, t.size(0));
    assertEquals(DType.F32, t.dtype());
    assertEquals(Device.CPU, t.device());
    assertTrue(t.isContiguous());
    assertEquals(13f, t.getFloat(1, 0, 1));
    long[] s = t.shape();
    s[0] = 99;
    assertEquals(2, t.size(0), "shape() returns a copy");
  }

  @Test
  void transposeAndPermute() {
    Tensor tt = t.transpose(0, 2); // (4, 3, 2), strides (1, 4, 12)
    assertArrayEquals(new long[] {4, 3, 2}, tt.shape());
    assertArrayEquals(new long[] {1, 4, 12}, tt.strides());
    assertFalse(tt.isContiguous());
    assertTrue(tt.sharesStorageWith(t));
    for (int i = 0; i < 4; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 2; k++) {
      assertEquals(i + 4 * j + 12 * k, tt.getFloat(i, j, k));
    }
    Tensor p = t.permute(1, 0, 2); // (3, 2, 4), strides (4, 12, 1)
    assertArrayEquals(new long[] {4, 12, 1}, p.strides());
    assertEquals(4 * 2 + 12 * 1 + 3, p.getFloat(2, 1, 3));
    Tensor p2 = t.permute(-1, 0, 1); // (4, 2, 3), strides (1, 12, 4)
    assertArrayEquals(new long[] {1, 12, 4}, p2.strides());
    assertEquals(3 + 12 + 8, p2.getFloat(3, 1, 2));
    assertEquals(t.address() + 0, tt.address(), "same element [0,0,0]");
  }

  @Test
  void sliceSelectUnsqueezeSqueeze() {
    Tensor s = t.slice(1, 1, 3); // (2, 2, 4), offset 4
    assertArrayEquals(new long[] {2, 2, 4}, s.shape());
    assertEquals(4, s.offset());
    assertEquals(t.address() + 16, s.address());
    for (int a = 0; a < 2; a++) for (int b = 0; b < 2; b++) for (int c = 0; c < 4; c++) {
      assertEquals(12 * a + 4 * (b + 1) + c, s.getFloat(a, b, c));
    }
    Tensor ss = s.slice(-1, 1, 3); // (2, 2, 2), offset 5
    assertEquals(5, ss.offset());
    assertEquals(12 + 8 + 2, ss.getFloat(1, 1, 1));
    Tensor sel = t.select(2, 3); // (2, 3), strides (12, 4), offset 3
    assertArrayEquals(new long[] {2, 3}, sel.shape());
    assertArrayEquals(new long[] {12, 4}, sel.strides());
    assertEquals(3, sel.offset());
    assertEquals(12 + 8 + 3, sel.getFloat(1, 2));
    Tensor row = t.select(0, 1).select(0, 2); // elements 20..23
    assertArrayEquals(new float[] {20, 21, 22, 23}, row.toFloatArray());
    Tensor u = t.unsqueeze(1); // (2, 1, 3, 4)
    assertArrayEquals(new long[] {2, 1, 3, 4}, u.shape());
    assertTrue(u.isContiguous());
    assertEquals(17f, u.getFloat(1, 0, 1, 1));
    Tensor uEnd = t.unsqueeze(-1); // (2, 3, 4, 1)
    assertArrayEquals(new long[] {2, 3, 4, 1}, uEnd.shape());
    assertArrayEquals(new long[] {2, 3, 4}, uEnd.squeeze().shape());
    assertArrayEquals(new long[] {2, 3, 4}, u.squeeze(1).shape());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> t.squeeze(0));
    assertTrue(e.getMessage().contains("size 2"), e.getMessage());
    Tensor empty = t.slice(1, 2, 2);
    assertEquals(0, empty.numel());
    assertEquals(0, empty.toFloatArray().length);
  }

  @Test
  void viewAndReshape() {
    Tensor v = t.view(-1, 6);
    assertArrayEquals(new long[] {4, 6}, v.shape());
    assertEquals(13f, v.getFloat(2, 1));
    Tensor tt = t.transpose(1, 2);
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> tt.view(24));
    assertTrue(e.getMessage().contains("contiguous"), e.getMessage());
    Tensor r = tt.reshape(24); // copies
    assertFalse(r.sharesStorageWith(t));
    assertEquals(4f, r.getFloat(1)); // tt[0,0,1] = t[0,1,0] = 4
    assertThrows(IllegalArgumentException.class, () -> t.view(5, -1));
    assertThrows(IllegalArgumentException.class, () -> t.view(-1, -1));
    IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> t.view(5, 5));
    assertTrue(bad.getMessage().contains("25"), bad.getMessage());
  }

  @Test
  void contiguousOnAwkwardStrides() {
    // Transposed, sliced and selected: strides (1, 12) over a slice with offset.
    Tensor awkward = t.permute(2, 0, 1).slice(0, 1, 4).select(2, 2); // (3, 2): [i, a] = t[a, 2, i+1]
    assertArrayEquals(new long[] {3, 2}, awkward.shape());
    assertArrayEquals(new long[] {1, 12}, awkward.strides());
    Tensor c = awkward.contiguous();
    assertTrue(c.isContiguous());
    assertFalse(c.sharesStorageWith(t));
    float[] expect = new float[6];
    for (int i = 0; i < 3; i++) for (int a = 0; a < 2; a++) expect[i * 2 + a] = 12 * a + 8 + i + 1;
    assertArrayEquals(expect, c.toFloatArray());
    assertArrayEquals(expect, awkward.toFloatArray());
    Tensor same = c.contiguous();
    assertNotSame(c, same);
    assertTrue(same.sharesStorageWith(c), "contiguous() of a contiguous tensor shares");
    // A size-1 dim with a weird stride still counts as contiguous.
    Tensor odd = t.slice(0, 1, 2);
    assertTrue(odd.isContiguous());
    // Rank-0 and a copy of a broadcast-free 4-d permutation.
    Tensor four = t.view(2, 3, 2, 2).permute(3, 1, 0, 2);
    float[] got = four.contiguous().toFloatArray();
    int k = 0;
    for (int d = 0; d < 2; d++) for (int b = 0; b < 3; b++) for (int a = 0; a < 2; a++) for (int c2 = 0; c2 < 2; c2++) {
      assertEquals(12 * a + 4 * b + 2 * c2 + d, got[k++]);
    }
  }

  @Test
  void copyFromBetweenStridedLayouts() {
    Tensor dst = Tensor.zeros(DType.F32, Device.CPU, 4, 3, 2);
    dst.transpose(0, 2).copyFrom(t.slice(2, 0, 4).slice(1, 0, 3)); // dst^T (2,3,4) <- t
    for (int i = 0; i < 4; i++) for (int j = 0; j < 3; j++) for (int k = 0; k < 2; k++) {
      assertEquals(t.getFloat(k, j, i), dst.getFloat(i, j, k));
    }
    // Overlapping copy within one storage: shift a row left by one.
    Tensor row = Tensor.of(new float[] {0, 1, 2, 3, 4});
    row.slice(0, 0, 4).copyFrom(row.slice(0, 1, 5));
    assertArrayEquals(new float[] {1, 2, 3, 4, 4}, row.toFloatArray());
    Tensor rev = Tensor.of(new float[] {0, 1, 2, 3, 4});
    rev.slice(0, 1, 5).copyFrom(rev.slice(0, 0, 4));
    assertArrayEquals(new float[] {0, 0, 1, 2, 3}, rev.toFloatArray());
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> dst.copyFrom(t));
    assertTrue(e.getMessage().contains("[2, 3, 4]") && e.getMessage().contains("[4, 3, 2]"), e.getMessage());
    Tensor ints = Tensor.of(new int[24], 4, 3, 2);
    e = assertThrows(IllegalArgumentException.class, () -> dst.copyFrom(ints));
    assertTrue(e.getMessage().contains("I32") && e.getMessage().contains("F32"), e.getMessage());
  }

  @Test
  void badIndicesAndDimsNameTheValue() {
    IndexOutOfBoundsException e = assertThrows(IndexOutOfBoundsException.class, () -> t.getFloat(0, 3, 0));
    assertTrue(e.getMessage().contains("index 3 out of range [0, 3) in dim 1"), e.getMessage());
    assertThrows(IndexOutOfBoundsException.class, () -> t.getFloat(-1, 0, 0));
    IllegalArgumentException rank = assertThrows(IllegalArgumentException.class, () -> t.getFloat(0, 0));
    assertTrue(rank.getMessage().contains("2 dims"), rank.getMessage());
    e = assertThrows(IndexOutOfBoundsException.class, () -> t.transpose(0, 3));
    assertTrue(e.getMessage().contains("dim 3"), e.getMessage());
    e = assertThrows(IndexOutOfBoundsException.class, () -> t.slice(1, 2, 4));
    assertTrue(e.getMessage().contains("slice(1, 2, 4)"), e.getMessage());
    assertThrows(IndexOutOfBoundsException.class, () -> t.slice(1, 2, 1));
    e = assertThrows(IndexOutOfBoundsException.class, () -> t.select(0, 2));
    assertTrue(e.getMessage().contains("select(0, 2)"), e.getMessage());
    IllegalArgumentException p = assertThrows(IllegalArgumentException.class, () -> t.permute(0, 0, 1));
    assertTrue(p.getMessage().contains("repeats dim 0"), p.getMessage());
    assertThrows(IllegalArgumentException.class, () -> t.permute(0, 1));
    IllegalArgumentException neg = assertThrows(IllegalArgumentException.class, () -> Tensor.empty(DType.F32, Device.CPU, 2, -3));
    assertTrue(neg.getMessage().contains("-3"), neg.getMessage());
    assertThrows(IllegalArgumentException.class, () -> Tensor.empty(DType.F32, Device.CPU, 1L << 40, 1L << 40));
    IllegalArgumentException dt = assertThrows(IllegalArgumentException.class, () -> t.getInt(0, 0, 0));
    assertTrue(dt.getMessage().contains("F32"), dt.getMessage());
    IllegalArgumentException len = assertThrows(IllegalArgumentException.class, () -> t.copyFrom(new float[5]));
    assertTrue(len.getMessage().contains("5 values for 24"), len.getMessage());
    assertThrows(IllegalArgumentException.class, () -> Tensor.of(new float[5], 2, 3));
  }

  @Test
  void useAfterCloseThrowsAndCloseIsIdempotent() {
    Tensor x = Tensor.of(new float[] {1, 2, 3});
    x.close();
    x.close();
    assertTrue(x.isClosed());
    IllegalStateException e = assertThrows(IllegalStateException.class, () -> x.getFloat(0));
    assertTrue(e.getMessage().contains("after close"), e.getMessage());
    assertThrows(IllegalStateException.class, x::address);
    assertThrows(IllegalStateException.class, () -> x.view(3));
    assertThrows(IllegalStateException.class, x::toFloatArray);
    assertThrows(IllegalStateException.class, () -> x.copyFrom(new float[3]));
    assertThrows(IllegalStateException.class, x::contiguous);
    Tensor y = Tensor.of(new float[] {1, 2, 3});
    assertThrows(IllegalStateException.class, () -> y.copyFrom(x));
  }

  @Test
  void viewsKeepTheStorageAliveAndNeverFreeIt() {
    Tensor parent = Tensor.of(new float[] {1, 2, 3, 4}, 2, 2).detach();
    Tensor view = parent.transpose(0, 1).detach();
    var storage = parent.storage();
    parent.close();
    assertTrue(storage.isAlive(), "the view still holds the storage");
    assertEquals(3f, view.getFloat(0, 1));
    Tensor view2 = view.slice(0, 1, 2).detach();
    view.close();
    assertTrue(storage.isAlive());
    assertEquals(4f, view2.getFloat(0, 1));
    view2.close();
    assertFalse(storage.isAlive(), "freed with the last reference");
  }

  @Test
  void concurrentCloseOfManyViews() throws Exception {
    for (int round = 0; round < 10; round++) {
      Tensor base = Tensor.zeros(DType.F32, Device.CPU, 64).detach();
      Tensor[] views = new Tensor[16];
      for (int i = 0; i < views.length; i++) views[i] = base.slice(0, i, i + 1).detach();
      var storage = base.storage();
      Thread[] threads = new Thread[8];
      for (int k = 0; k < threads.length; k++) {
        threads[k] = new Thread(() -> {
          for (Tensor v : views) v.close();
          base.close();
        });
      }
      for (Thread th : threads) th.start();
      for (Thread th : threads) th.join();
      assertFalse(storage.isAlive());
      assertEquals(0, storage.refCount());
    }
  }

  @Test
  void scalarsAndZeroSizes() {
    Tensor s = Tensor.scalar(2.5f);
    assertEquals(0, s.rank());
    assertEquals(1, s.numel());
    assertEquals(2.5f, s.item());
    assertEquals(2.5f, s.getFloat());
    assertArrayEquals(new long[] {1}, s.unsqueeze(0).shape());
    Tensor z = Tensor.zeros(DType.F16, Device.CPU, 0, 5);
    assertEquals(0, z.numel());
    assertEquals(0, z.toFloatArray().length);
    assertTrue(z.isContiguous());
    assertThrows(IllegalStateException.class, t::item);
  }
}
