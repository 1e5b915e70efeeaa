package dev.athanor.memory;

import dev.athanor.runtime.Event;
import dev.athanor.runtime.Stream;
import java.util.Iterator;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * Storages kept alive by asynchronous work: {@link #releaseAfter} takes a reference to each and records an
 * event on the stream; {@link #poll()} gives the references back once their event has completed. Polled by every
 * {@link #releaseAfter}, by {@link dev.athanor.runtime.ExecutionContext#synchronize()} and before a caching
 * allocator goes native, so memory freed by the caller while a copy is in flight is reused only afterwards.
 */
public final class InFlight {
  private record Entry(Event event, Storage[] storages) {}

  private static final ConcurrentLinkedQueue<Entry> PENDING = new ConcurrentLinkedQueue<>();

  private InFlight() {}

  /**
   * Keeps {@code storages} alive until the work queued on {@code stream} so far has completed. On a CPU stream
   * that work has completed already, so nothing is kept.
   */
  public static void releaseAfter(Stream stream, Storage... storages) {
    poll();
    if (!stream.device().isCuda()) return;
    for (int i = 0; i < storages.length; i++) {
      try {
        storages[i].retain();
      } catch (RuntimeException e) {
        for (int j = 0; j < i; j++) storages[j].release();
        throw e;
      }
    }
    Event e = EventPool.recordOn(stream);
    if (e == null) { // the stream is closed: its work has finished
      for (Storage s : storages) s.release();
      return;
    }
    PENDING.add(new Entry(e, storages.clone()));
  }

  /** Releases the storages of completed work; returns how many entries are still pending. Never blocks. */
  public static int poll() {
    int left = 0;
    for (Iterator<Entry> it = PENDING.iterator(); it.hasNext(); ) {
      Entry e = it.next();
      if (!e.event.isComplete()) {
        left++;
        continue;
      }
      if (PENDING.remove(e)) { // only one poller releases an entry
        for (Storage s : e.storages) s.release();
        EventPool.release(e.event);
      }
    }
    return left;
  }
}
