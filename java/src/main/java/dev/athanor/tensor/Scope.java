package dev.athanor.tensor;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;

/**
 * Closes, with itself, every tensor created on its thread while it is the innermost open scope:
 * <pre>{@code
 * try (Scope s = Scope.open()) {
 *   Tensor a = Tensor.zeros(DType.F32, Device.CPU, 4, 4);
 *   Tensor b = a.transpose(0, 1);
 *   result = s.keep(b.contiguous());   // survives this scope
 * }                                     // a and b are closed here
 * }</pre>
 * Scopes nest; a tensor belongs to the innermost scope open on the thread that created it. {@link #keep}
 * hands a tensor to the enclosing scope (if any, else to nobody: the caller then closes it);
 * {@link Tensor#detach()} removes it from every scope. Closing a tensor early is fine: it leaves its scope.
 * Tensors are closed in reverse order of creation; closing is idempotent. A scope should be closed on the
 * thread that opened it (try-with-resources does that); closing it elsewhere still closes its tensors.
 */
public final class Scope implements AutoCloseable {
  private static final ThreadLocal<ArrayDeque<Scope>> STACK = ThreadLocal.withInitial(ArrayDeque::new);

  private final Thread owner;
  private final Scope parent;
  private final LinkedHashSet<Tensor> tensors = new LinkedHashSet<>(); // Tensor has identity equality
  private boolean closed; // guarded by this

  private Scope(Thread owner, Scope parent) {
    this.owner = owner;
    this.parent = parent;
  }

  /** Opens a scope on the current thread, nested inside the current innermost one. */
  public static Scope open() {
    ArrayDeque<Scope> stack = STACK.get();
    Scope s = new Scope(Thread.currentThread(), stack.peek());
    stack.push(s);
    return s;
  }

  /** The innermost open scope of the current thread, or null. */
  public static Scope current() {
    return STACK.get().peek();
  }

  /** Registers a new tensor with the current thread's innermost scope, if any. */
  static void register(Tensor t) {
    for (Scope s : STACK.get()) { // innermost first; skips scopes closed from another thread
      if (s.add(t)) return;
    }
  }

  private synchronized boolean add(Tensor t) {
    if (closed) return false;
    tensors.add(t);
    t.scope = this;
    return true;
  }

  /** Called by Tensor.close/detach. */
  synchronized void remove(Tensor t) {
    if (tensors.remove(t) && t.scope == this) t.scope = null;
  }

  /**
   * Lets {@code t} outlive this scope: if it belongs to this scope it moves to the enclosing scope (the
   * nearest one still open), or to no scope when there is none, and the caller must close it. A tensor that
   * does not belong to this scope is left where it is. Returns {@code t}. Throws if {@code t} is closed.
   */
  public <T extends Tensor> T keep(T t) {
    t.checkOpen();
    synchronized (this) {
      if (!tensors.remove(t)) return t;
      if (t.scope == this) t.scope = null;
    }
    Scope p = parent;
    while (p != null && !p.add(t)) p = p.parent;
    return t;
  }

  /** Number of tensors this scope will close. */
  public synchronized int size() {
    return tensors.size();
  }

  public synchronized boolean isClosed() {
    return closed;
  }

  /** Closes every tensor still registered (newest first); idempotent. */
  @Override
  public void close() {
    List<Tensor> toClose;
    synchronized (this) {
      if (closed) return;
      closed = true;
      toClose = new ArrayList<>(tensors);
      for (Tensor t : tensors) if (t.scope == this) t.scope = null;
      tensors.clear();
    }
    if (Thread.currentThread() == owner) {
      ArrayDeque<Scope> stack = STACK.get();
      stack.remove(this);
      if (stack.isEmpty()) STACK.remove();
    }
    RuntimeException first = null;
    for (int i = toClose.size() - 1; i >= 0; i--) {
      try {
        toClose.get(i).close();
      } catch (RuntimeException e) {
        if (first == null) first = e; else first.addSuppressed(e);
      }
    }
    if (first != null) throw first;
  }

  @Override
  public String toString() {
    return "Scope(" + size() + " tensors" + (isClosed() ? ", closed" : "") + ")";
  }
}
