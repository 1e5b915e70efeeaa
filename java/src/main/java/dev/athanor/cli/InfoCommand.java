package dev.athanor.cli;

import dev.athanor.memory.MemoryManager;
import dev.athanor.memory.Tier;
import dev.athanor.runtime.Cuda;
import dev.athanor.runtime.NativeLibrary;
import dev.athanor.runtime.NativeRuntime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParentCommand;

/** {@code athanor info}: what this machine and this build of Athanor can do. */
@Command(name = "info", description = "Backends, devices, CPU features, the kernels available, memory tiers and budgets.")
final class InfoCommand implements Callable<Integer> {
  @ParentCommand Main main;

  @Option(names = "--json", description = "one JSON object instead of text")
  boolean json;

  @Override
  public Integer call() {
    Map<String, Object> info = collect();
    main.out.println(json ? Json.write(info) : text(info));
    return 0;
  }

  static Map<String, Object> collect() {
    NativeLibrary.load();
    Map<String, Object> info = new LinkedHashMap<>();
    info.put("version", NativeRuntime.version());
    info.put("library", String.valueOf(NativeLibrary.loadedFrom()));
    info.put("java", Runtime.version().toString() + " (" + System.getProperty("java.vm.name") + ")");
    info.put("os", System.getProperty("os.name") + " " + System.getProperty("os.arch"));

    Map<String, Object> cpu = new LinkedHashMap<>();
    cpu.put("isa", NativeRuntime.cpuIsa());
    cpu.put("threads", NativeRuntime.cpuThreads());
    cpu.put("features", NativeRuntime.cpuFeatures());
    cpu.put("kernels", NativeRuntime.kernels("cpu"));
    info.put("cpu", cpu);

    Map<String, Object> cuda = new LinkedHashMap<>();
    cuda.put("built", NativeRuntime.builtWithCuda());
    cuda.put("available", Cuda.isAvailable());
    if (Cuda.isAvailable()) {
      List<Object> devices = new ArrayList<>();
      for (int d = 0; d < Cuda.deviceCount(); d++) devices.add("cuda:" + d + " " + Cuda.deviceInfo(d));
      cuda.put("devices", devices);
    } else {
      cuda.put("reason", Cuda.unavailableReason());
    }
    cuda.put("kernels", NativeRuntime.kernels("cuda"));
    info.put("cuda", cuda);

    MemoryManager mm = MemoryManager.global();
    Map<String, Object> tiers = new LinkedHashMap<>();
    for (Tier t : Tier.values()) {
      Map<String, Object> tier = new LinkedHashMap<>();
      long budget = mm.budgetBytes(t);
      tier.put("budget", budget == Long.MAX_VALUE ? "unlimited" : Bytes.format(budget));
      tier.put("live", Bytes.format(mm.liveBytes(t)));
      tier.put("peak", Bytes.format(mm.peakBytes(t)));
      if (t == Tier.DISK) tier.put("directory", String.valueOf(mm.diskDirectory()));
      tiers.put(t.name(), tier);
    }
    info.put("memory", tiers);
    return info;
  }

  @SuppressWarnings("unchecked")
  static String text(Map<String, Object> info) {
    StringBuilder sb = new StringBuilder();
    sb.append("Athanor ").append(info.get("version")).append('\n');
    sb.append("  library   ").append(info.get("library")).append('\n');
    sb.append("  java      ").append(info.get("java")).append('\n');
    sb.append("  os        ").append(info.get("os")).append("\n\n");
    Map<String, Object> cpu = (Map<String, Object>) info.get("cpu");
    sb.append("Backend cpu: available\n");
    sb.append("  isa       ").append(cpu.get("isa")).append('\n');
    sb.append("  threads   ").append(cpu.get("threads")).append('\n');
    sb.append("  features  ").append(cpu.get("features")).append('\n');
    sb.append("  kernels   ").append(cpu.get("kernels")).append("\n\n");
    Map<String, Object> cuda = (Map<String, Object>) info.get("cuda");
    boolean available = (Boolean) cuda.get("available");
    sb.append("Backend cuda: ").append(available ? "available" : "unavailable").append('\n');
    sb.append("  built     ").append((Boolean) cuda.get("built") ? "with CUDA kernels" : "CPU-only").append('\n');
    if (available) {
      for (Object d : (List<Object>) cuda.get("devices")) sb.append("  device    ").append(d).append('\n');
    } else {
      sb.append("  reason    ").append(cuda.get("reason")).append('\n');
    }
    String kernels = (String) cuda.get("kernels");
    sb.append("  kernels   ").append(kernels.isEmpty() ? "(none)" : kernels).append("\n\n");
    sb.append("Memory tiers:\n");
    sb.append(String.format("  %-12s %12s %12s %12s%n", "tier", "budget", "live", "peak"));
    Map<String, Object> tiers = (Map<String, Object>) info.get("memory");
    for (var e : tiers.entrySet()) {
      Map<String, Object> t = (Map<String, Object>) e.getValue();
      sb.append(String.format("  %-12s %12s %12s %12s", e.getKey(), t.get("budget"), t.get("live"), t.get("peak")));
      if (t.containsKey("directory")) sb.append("   ").append(t.get("directory"));
      sb.append('\n');
    }
    return sb.toString().stripTrailing();
  }
}
