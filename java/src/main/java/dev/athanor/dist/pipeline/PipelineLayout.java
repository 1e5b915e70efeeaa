package dev.athanor.dist.pipeline;

import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Stage;
import dev.athanor.params.ParameterStore;
import dev.athanor.params.ParamSpec;
import dev.athanor.params.Range;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A model's blocks cut into {@code stages} contiguous stages as evenly as possible (the first {@code layers % stages}
 * stages get one block more), the first with the embeddings, the last with the head; and where each stage's
 * parameters lie in one process's flat layout of the whole model.
 *
 * <p>The whole model's flat layout is its units in order (embedding, blocks, head), each parameter aligned. A stage's
 * own store lays out its units the same way, so its parameters are the contiguous range {@link #wholeRange} of the
 * whole layout and the same-length prefix of its own flat buffers; the last stage of a tied model keeps its copy of
 * the token embedding after that prefix (the copy belongs to the first stage's range).
 *
 * <p>Immutable; the stages' ranges are computed once, on construction (the planner and the clipping norm ask for them
 * per chunk of the layout).
 */
public final class PipelineLayout {
  private final ModelConfig config;
  private final int stages;
  private final Range[] ranges;  // each stage's range of the whole layout

  public PipelineLayout(ModelConfig config, int stages) {
    java.util.Objects.requireNonNull(config, "config");
    if (stages < 1) throw new IllegalArgumentException("pipeline stages " + stages + " must be >= 1");
    if (stages > config.layers()) {
      throw new IllegalArgumentException("pipeline stages " + stages + " exceed the model's " + config.layers()
          + " blocks (each stage needs at least one)");
    }
    this.config = config;
    this.stages = stages;
    this.ranges = new Range[stages];
    for (int s = 0; s < stages; s++) {
      Stage st = stage(s);
      long start = s == 0 ? 0 : numel(config.parameterUnits(new Stage(0, st.firstBlock(), true, false)));
      long end = s == stages - 1 ? numel(config.parameterUnits(Stage.whole(config)))
          : numel(config.parameterUnits(new Stage(0, st.endBlock(), true, false)));
      ranges[s] = new Range(start, end);
    }
  }

  /** The model that is cut. */
  public ModelConfig config() {
    return config;
  }

  /** The number of stages. */
  public int stages() {
    return stages;
  }

  /** Stage {@code s}'s part of the model. */
  public Stage stage(int s) {
    if (s < 0 || s >= stages) throw new IllegalArgumentException("stage " + s + " is outside [0, " + stages + ")");
    int l = config.layers(), base = l / stages, extra = l % stages;
    int first = s * base + Math.min(s, extra);
    return new Stage(first, first + base + (s < extra ? 1 : 0), s == 0, s == stages - 1);
  }

  /** Stage {@code s}'s parameters in the whole model's flat layout. */
  public Range wholeRange(int s) {
    if (s < 0 || s >= stages) throw new IllegalArgumentException("stage " + s + " is outside [0, " + stages + ")");
    return ranges[s];
  }

  /** The whole model's flat length. */
  public long wholeNumel() {
    return wholeRange(stages - 1).end();
  }

  /** Whether stage {@code s} holds a copy of the tied token embedding that the first stage owns. */
  public boolean holdsTiedCopy(int s) {
    return stages > 1 && s == stages - 1 && config.tiedEmbeddings();
  }

  /** The pipeline bubble: the fraction of the schedule a stage idles, {@code (stages - 1) / (microBatches + stages - 1)}. */
  public double bubble(int microBatches) {
    return (stages - 1) / (double) (microBatches + stages - 1);
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof PipelineLayout p && p.stages == stages && p.config.equals(config);
  }

  @Override
  public int hashCode() {
    return 31 * config.hashCode() + stages;
  }

  @Override
  public String toString() {
    return "PipelineLayout[config=" + config + ", stages=" + stages + "]";
  }

  private static long numel(Map<String, List<ParamSpec>> units) {
    List<ParamSpec> all = new ArrayList<>();
    units.values().forEach(all::addAll);
    return ParameterStore.layoutNumel(all);
  }
}
