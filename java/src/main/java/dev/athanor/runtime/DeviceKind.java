package dev.athanor.runtime;

/** The kind of processor a tensor's memory belongs to. */
public enum DeviceKind {
  CPU,
  CUDA
}
