package dev.athanor.cli;

import dev.athanor.memory.MemoryManager;
import dev.athanor.nn.ModelConfig;
import dev.athanor.report.RunReport;
import dev.athanor.report.TrainLog;
import dev.athanor.report.TrainingCharts;
import dev.athanor.runtime.Device;
import dev.athanor.runtime.NativeLibrary;
import dev.athanor.train.StepResult;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.checkpoint.CheckpointEvent;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * What {@code train} writes next to its log once training is done: the charts ({@link TrainingCharts}, PNG and SVG)
 * and the run report ({@link RunReport}, one HTML page). Neither may fail the run: a problem is printed to
 * {@code err} and the rest is still written.
 *
 * @param lossPlot the loss chart's PNG, or null when no chart could be drawn
 * @param report the HTML report, or null when it could not be written
 */
record RunOutputs(Path lossPlot, Path report) {
  /**
   * Draws the charts of the log at {@code log} (the whole log: a resumed run's earlier steps too; {@code results}
   * when it cannot be read) and writes the report beside it.
   */
  static RunOutputs write(Path log, List<StepResult> results, ModelConfig model, TrainConfig train, Device device,
      Path data, long dataTokens, Path modelDir, List<String> args, List<CheckpointEvent> checkpoints, PrintStream err) {
    List<StepResult> steps;
    TrainLog.Contents contents;
    try {
      contents = TrainLog.readAll(log);
    } catch (IOException e) {
      contents = new TrainLog.Contents(results, List.of(), null);
    }
    steps = contents.steps().isEmpty() ? results : contents.steps();
    List<TrainingCharts.Chart> charts = List.of();
    String chartsMissing = chartsUnavailable();
    if (chartsMissing == null) {
      try {
        charts = TrainingCharts.write(log, steps, contents.traffic());
      } catch (IOException | RuntimeException | LinkageError e) {
        chartsMissing = e instanceof TrainingCharts.ChartsUnavailableException ? e.getMessage() : e.toString();
      }
    }
    if (chartsMissing != null) err.println("athanor train: no charts written (" + chartsMissing + ")");
    Map<String, String> details = new LinkedHashMap<>();
    details.put("device", device.toString());
    details.put("data", data + " (" + Counts.format(dataTokens) + " tokens)");
    details.put("model saved to", modelDir.toString());
    details.put("log", log.toString());
    details.put("command", "athanor train " + String.join(" ", args));
    details.put("java", System.getProperty("java.vm.name") + " " + Runtime.version());
    if (device.isCpu()) details.put("cpu threads", Integer.toString(dev.athanor.runtime.NativeRuntime.cpuThreads()));
    Path report = RunReport.fileFor(log);
    try {
      RunReport.write(report, new RunReport.Run("athanor train", NativeLibrary.javaVersion(), Instant.now(), model,
          model.parameterCount(), train, details, steps, charts, chartsMissing, RunReport.TierUse.of(MemoryManager.global()),
          checkpoints, contents.traffic(), contents.summary()));
    } catch (IOException | RuntimeException e) {
      err.println("athanor train: no report written (" + e + ")");
      report = null;
    }
    return new RunOutputs(charts.isEmpty() ? null : charts.getFirst().png(), report);
  }

  /**
   * Why this JVM cannot draw charts, known before touching {@link TrainingCharts} (whose AWT types fail to load without
   * java.desktop): a runtime without the java.desktop module, such as a trimmed jlink image; null when it has it.
   */
  static String chartsUnavailable() {
    return ModuleLayer.boot().findModule("java.desktop").isPresent() ? null
        : "this Java runtime has no java.desktop module (AWT), which drawing them needs; a full JDK or JRE draws them";
  }
}
