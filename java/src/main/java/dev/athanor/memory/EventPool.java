package dev.athanor.memory;

import dev.athanor.runtime.Device;
import dev.athanor.runtime.Event;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedDeque;

/**
 * Reused CUDA events (without timing) per device, for the markers of the caching allocators and of
 * {@link InFlight}: after warm-up, freeing memory and asynchronous copies create no events. Events stay
 * alive for the life of the process.
 */
final class EventPool {
  private static final ConcurrentHashMap<Device, ConcurrentLinkedDeque<Event>> FREE = new ConcurrentHashMap<>();

  private EventPool() {}

  static Event acquire(Device device) {
    Event e = FREE.computeIfAbsent(device, d -> new ConcurrentLinkedDeque<>()).pollFirst();
    return e != null ? e : Event.create(device);
  }

  static void release(Event e) {
    FREE.computeIfAbsent(e.device(), d -> new ConcurrentLinkedDeque<>()).addFirst(e);
  }

  /** An event recorded at the end of {@code stream}, or null when the stream is closed (its work is done). */
  static Event recordOn(dev.athanor.runtime.Stream stream) {
    Event e = acquire(stream.device());
    try {
      return e.record(stream);
    } catch (IllegalStateException closed) {
      release(e);
      return null;
    }
  }
}
