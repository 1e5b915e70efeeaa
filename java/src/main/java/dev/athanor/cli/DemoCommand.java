package dev.athanor.cli;

import dev.athanor.infer.SamplingConfig;
import dev.athanor.nn.Transformer;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * {@code athanor demo}: the README's main job. Trains a small GPT-2-style model (4 layers, 256 wide, GPT-2
 * vocabulary) from scratch on the Java sources in the running JDK's {@code lib/src.zip} (java.base first;
 * no download), shows the loss falling, saves the model, writes the charts and the run report and generates a sample.
 */
final class DemoCommand {
  static final Set<String> FLAGS = Set.of("steps", "device", "out", "data", "max-bytes", "batch", "seq", "prompt");

  private DemoCommand() {}

  static void run(List<String> args, PrintStream out) {
    Flags f = new Flags("demo", args, FLAGS, Set.of());
    Path data = f.path("data", defaultCorpus());
    Path outDir = f.path("out", Path.of("runs", "demo"));
    String device = f.str("device", "auto");
    boolean gpu = Models.device(device).isCuda();
    List<String> train = new ArrayList<>(List.of("--preset", "gpt2-tiny", "--data", data.toString(),
        "--max-bytes", f.str("max-bytes", "24000000"), "--steps", f.str("steps", gpu ? "2000" : "300"),
        "--batch", f.str("batch", gpu ? "32" : "8"), "--seq", f.str("seq", "256"), "--lr", "1e-3", "--min-lr", "1e-4",
        "--warmup", "30", "--shuffle", "true", "--device", device,
        "--out", outDir.resolve("model").toString(), "--log", outDir.resolve("train-log.jsonl").toString()));
    out.println("athanor demo: training a small GPT on the JDK's Java sources (" + data + "), then sampling from it");
    TrainCommand.Result r = TrainCommand.run(train, out);
    out.println();
    // A Javadoc prompt: after a few minutes the model writes comment-like prose and tags; from a code prompt it
    // mostly predicts indentation (GPT-2's BPE spends one token per space of it).
    out.println("sample (temperature 0.8, top-k 40):");
    out.println("----");
    try (Transformer model = Models.load(r.modelDir(), Models.device(device))) {
      GenerateCommand.generate(model, Models.tokenizer(r.modelDir(), model.config()),
          f.str("prompt", "/**\n * Returns the"), new SamplingConfig(0.8f, 40, 0.95f, 7, 120, true), out);
    }
    out.println("----");
    out.printf("done: loss %.3f -> %.3f; model %s; loss curve %s; report %s; log %s%n", r.firstLoss(), r.lastLoss(),
        r.modelDir(), r.plot() != null ? r.plot() : "(not drawn)", r.report() != null ? r.report() : "(not written)", r.log());
    out.println("next: ./athanor generate --model " + r.modelDir() + " --prompt \"/** Creates a\"");
  }

  /** The JDK's own source archive, or this repository's Java sources when the JDK ships none. */
  static Path defaultCorpus() {
    Path zip = Path.of(System.getProperty("java.home"), "lib", "src.zip");
    if (Files.isRegularFile(zip)) return zip;
    Path repo = Path.of("java", "src", "main", "java");
    if (Files.isDirectory(repo)) return repo;
    throw new IllegalArgumentException("no corpus found: " + zip + " is missing (install the JDK's sources) and "
        + repo + " is not here; pass --data PATH");
  }
}
