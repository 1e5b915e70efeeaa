package dev.athanor.params;

/**
 * A contiguous group of parameters that is fetched, released, sharded or offloaded together: the embeddings,
 * one transformer block, or the head. Its parameters are {@code [firstParam, endParam)} in the store's order and
 * occupy {@code elements} of the flat layout.
 */
public record Unit(String name, int index, int firstParam, int endParam, Range elements) {
  public int paramCount() {
    return endParam - firstParam;
  }

  @Override
  public String toString() {
    return name + elements;
  }
}
