package dev.athanor.cli;

import dev.athanor.cli.Options.Range;
import dev.athanor.infer.SamplingConfig;
import dev.athanor.io.tokenizer.Tokenizer;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/**
 * {@code athanor demo}: the README's main job. Trains a small GPT-2-style model (4 layers, 256 wide, GPT-2
 * vocabulary) from scratch on the Java sources in the running JDK's {@code lib/src.zip} (java.base first;
 * no download), shows the loss falling, saves the model, writes the charts and the run report and generates a sample.
 */
@Command(name = "demo", sortOptions = false, abbreviateSynopsis = true,
    description = {"Train a small GPT (4 layers, width 256, GPT-2's vocabulary) from scratch on the Java sources of the "
        + "running JDK for a few minutes, plot the loss, save the model and sample from it. Outputs go to --out."})
final class DemoCommand implements Callable<Integer> {
  @ParentCommand Main main;

  @Option(names = "--steps", paramLabel = "N", description = "training steps (default: 300 on the CPU, 2000 on a GPU)")
  @Range(min = 1)
  Integer steps;

  @Option(names = "--batch", paramLabel = "N", description = "sequences per step (default: 8 on the CPU, 32 on a GPU)")
  @Range(min = 1)
  Integer batch;

  @Option(names = "--seq", paramLabel = "TOKENS", defaultValue = "256", description = "tokens per sequence. Default: ${DEFAULT-VALUE}")
  @Range(min = 1)
  int seq;

  @Option(names = "--data", paramLabel = "PATH", description = "the corpus (default: the JDK's lib/src.zip)")
  Path data;

  @Option(names = "--max-bytes", paramLabel = "SIZE", defaultValue = "24000000", converter = Options.Size.class,
      description = "tokenize at most this much of it. Default: ${DEFAULT-VALUE}")
  long maxBytes;

  @Option(names = "--out", paramLabel = "DIR", defaultValue = "runs/demo",
      description = "where the model, the log and the loss plot go. Default: ${DEFAULT-VALUE}")
  Path out;

  @Option(names = "--prompt", paramLabel = "TEXT", defaultValue = "/**\n * Returns the",
      description = "the text to continue after training (default: the start of a Javadoc comment)")
  String prompt;

  @ArgGroup(exclusive = false, validate = false, heading = "%nRuntime:%n")
  Options.RuntimeOptions runtime = new Options.RuntimeOptions();

  @ArgGroup(exclusive = false, validate = false, heading = "%nOffload (CPU only: weights, gradients and AdamW state on DISK):%n")
  Options.OffloadOptions offload = new Options.OffloadOptions();

  @Override
  public Integer call() {
    PrintStream o = main.out;
    Path corpus = data != null ? data : defaultCorpus();
    Device device = runtime.apply();
    boolean gpu = device.isCuda();
    List<String> offloadArgs = new ArrayList<>(List.of("--offload", offload.offload));
    if (offload.dir != null) offloadArgs.addAll(List.of("--offload-dir", offload.dir.toString()));
    if (offload.chunk != null) offloadArgs.addAll(List.of("--offload-chunk", offload.chunk.toString()));
    TrainCommand train = TrainCommand.parse(main, offloadArgs, "--preset", "gpt2-tiny", "--data", corpus.toString(), "--max-bytes",
        Long.toString(maxBytes), "--steps", Integer.toString(steps != null ? steps : gpu ? 2000 : 300), "--batch",
        Integer.toString(batch != null ? batch : gpu ? 32 : 8), "--seq", Integer.toString(seq), "--lr", "1e-3", "--min-lr",
        "1e-4", "--warmup", "30", "--shuffle", "true", "--device", runtime.device, "--out", out.resolve("model").toString(),
        "--log", out.resolve("train-log.jsonl").toString());
    o.println("athanor demo: training a small GPT on the JDK's Java sources (" + corpus + "), then sampling from it");
    TrainCommand.Result r = train.run(o);
    o.println();
    // A Javadoc prompt: after a few minutes the model writes comment-like prose and tags; from a code prompt it
    // mostly predicts indentation (GPT-2's BPE spends one token per space of it).
    o.println("sample (temperature 0.8, top-k 40):");
    o.println("----");
    try (Transformer model = Models.load(r.modelDir(), device);
        Tokenizer tok = Models.tokenizer(r.modelDir(), model.config())) {
      GenerateCommand.generate(model, tok, prompt, new SamplingConfig(0.8f, 40, 0.95f, 7, 120, true), o);
    }
    o.println("----");
    o.printf("done: loss %.3f -> %.3f; model %s; loss curve %s; report %s; log %s%n", r.firstLoss(), r.lastLoss(),
        r.modelDir(), r.plot() != null ? r.plot() : "(not drawn)", r.report() != null ? r.report() : "(not written)", r.log());
    o.println("next: ./athanor generate --model " + r.modelDir() + " --prompt \"/** Creates a\"");
    return 0;
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
