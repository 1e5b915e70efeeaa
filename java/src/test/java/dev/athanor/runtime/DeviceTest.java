package dev.athanor.runtime;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class DeviceTest {
  @Test
  void parsesAndPrints() {
    assertEquals(Device.CPU, Device.parse("cpu"));
    assertEquals(Device.CPU, Device.parse(" CPU "));
    assertEquals(Device.cuda(0), Device.parse("cuda"));
    assertEquals(Device.cuda(3), Device.parse("cuda:3"));
    assertEquals("cuda:3", Device.cuda(3).toString());
    assertEquals("cpu", Device.CPU.toString());
    assertTrue(Device.cuda(1).isCuda());
    assertFalse(Device.CPU.isCuda());
  }

  @Test
  void rejectsBadText() {
    for (String s : new String[] {"gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:1", ""}) {
      IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Device.parse(s));
      assertTrue(e.getMessage().contains("'" + s + "'"), e.getMessage());
    }
    assertThrows(IllegalArgumentException.class, () -> Device.cuda(-1));
    assertThrows(IllegalArgumentException.class, () -> new Device(DeviceKind.CPU, 1));
  }
}
