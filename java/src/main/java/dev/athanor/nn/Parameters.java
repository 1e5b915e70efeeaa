package dev.athanor.nn;

import dev.athanor.ops.Ops;
import dev.athanor.runtime.Device;
import dev.athanor.tensor.DType;
import dev.athanor.tensor.Tensor;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The parameters of a model on one device: for every {@link ParamSpec}, an FP32 master tensor (what the
 * optimizer updates and what is saved), a copy in the compute dtype that the forward and backward read
 * (the master itself when computing in FP32), and an FP32 gradient accumulator.
 */
public final class Parameters implements AutoCloseable {
  /** One parameter. {@code compute == master} when the compute dtype is F32. */
  public record Param(ParamSpec spec, Tensor master, Tensor compute, Tensor grad) {
    public String name() {
      return spec.name();
    }
  }

  private final List<Param> params;
  private final Map<String, Param> byName;
  private final Device device;
  private final DType computeDtype;

  Parameters(List<ParamSpec> specs, Device device, DType computeDtype) {
    this.device = device;
    this.computeDtype = computeDtype;
    List<Param> list = new ArrayList<>(specs.size());
    Map<String, Param> map = new LinkedHashMap<>();
    try {
      for (ParamSpec s : specs) {
        // detached: a Scope the caller has open must not close the model's tensors
        Tensor master = Tensor.zeros(DType.F32, device, s.shape()).detach();
        Tensor compute = computeDtype == DType.F32 ? master : Tensor.zeros(computeDtype, device, s.shape()).detach();
        Tensor grad = Tensor.zeros(DType.F32, device, s.shape()).detach();
        Param p = new Param(s, master, compute, grad);
        list.add(p);
        map.put(s.name(), p);
      }
    } catch (RuntimeException e) {
      for (Param p : list) closeParam(p);
      throw e;
    }
    this.params = Collections.unmodifiableList(list);
    this.byName = Collections.unmodifiableMap(map);
  }

  /** All parameters in {@link ModelConfig#parameterSpecs()} order. */
  public List<Param> list() {
    return params;
  }

  /** The parameter called {@code name}. */
  public Param get(String name) {
    Param p = byName.get(name);
    if (p == null) throw new IllegalArgumentException("no parameter named \"" + name + "\"");
    return p;
  }

  /** The compute-dtype tensor of {@code name}. */
  Tensor w(String name) {
    return get(name).compute();
  }

  /** The gradient accumulator of {@code name}. */
  Tensor g(String name) {
    return get(name).grad();
  }

  public Device device() {
    return device;
  }

  public DType computeDtype() {
    return computeDtype;
  }

  /** The FP32 master tensors by name, in order (views owned by this object: do not close them). */
  public Map<String, Tensor> masters() {
    Map<String, Tensor> m = new LinkedHashMap<>();
    for (Param p : params) m.put(p.name(), p.master());
    return m;
  }

  /** The gradient tensors, in order. */
  public List<Tensor> grads() {
    List<Tensor> g = new ArrayList<>(params.size());
    for (Param p : params) g.add(p.grad());
    return g;
  }

  /** Sets every gradient to zero. */
  public void zeroGrad() {
    for (Param p : params) Ops.fill(p.grad(), 0f);
  }

  /** Refreshes the compute copies from the masters (after the masters were written directly). */
  public void syncCompute() {
    if (computeDtype == DType.F32) return;
    for (Param p : params) Ops.convert(p.master(), p.compute());
  }

  /** The total number of elements. */
  public long count() {
    long n = 0;
    for (Param p : params) n += p.spec().numel();
    return n;
  }

  private static void closeParam(Param p) {
    if (p.compute() != p.master()) p.compute().close();
    p.master().close();
    p.grad().close();
  }

  @Override
  public void close() {
    for (Param p : params) closeParam(p);
  }
}
