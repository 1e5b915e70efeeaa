package dev.athanor.offload;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.athanor.io.data.DataLoader;
import dev.athanor.io.data.TokenDataset;
import dev.athanor.nn.ModelConfig;
import dev.athanor.nn.Transformer;
import dev.athanor.runtime.Device;
import dev.athanor.train.TrainConfig;
import dev.athanor.train.Trainer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import jdk.jfr.Recording;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordingFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The JDK Flight Recorder events of the offload (issue 9): a tiny model trained with everything on DISK under a
 * recording started in the test leaves {@code dev.athanor.offload.Transfer} events for the model's units, in both
 * directions, whose bytes add up to the trainer's transfer totals; {@code Stall} events name the model's units too.
 */
class OffloadJfrTest {
  static final String TRANSFER = "dev.athanor.offload.Transfer", STALL = "dev.athanor.offload.Stall";

  @Test
  void transferEventsNameTheUnitsAndAddUpToTheTrainersTotals(@TempDir Path tmp) throws Exception {
    Path data = OffloadedOptimizerTest.shard(tmp);
    ModelConfig cfg = OffloadedOptimizerTest.GPT2;
    TrainConfig tc = OffloadedOptimizerTest.tc(2, 1);
    Path jfr = tmp.resolve("offload.jfr");
    TransferStats.Snapshot totals;
    try (Recording rec = new Recording()) {
      rec.enable(TRANSFER).withThreshold(Duration.ZERO);
      rec.enable(STALL).withThreshold(Duration.ZERO);
      rec.start();
      // every transfer of the trainer's life is inside the recording: creating its files, the steps, reading the
      // weights back when it closes; the totals are read after the close (the I/O threads have finished then)
      Trainer t;
      try (TokenDataset d = TokenDataset.open(data); Transformer model = Transformer.create(cfg, Device.CPU)) {
        t = new Trainer(model, tc, new DataLoader(d, tc.batch(), tc.seq(), tc.shuffle(), tc.seed()),
            OffloadConfig.allOnDisk(tmp.resolve("offload")));
        try (t) {
          model.initialize(8);
          while (!t.done()) t.step();
          TransferStats.Snapshot steps = t.transfers();
          assertTrue(steps.diskToHost() > 0 && steps.hostToDisk() > 0, "the steps moved data both ways: " + steps);
        }
      }
      totals = t.transfers();
      rec.stop();
      rec.dump(jfr);
    }

    Set<String> units = new HashSet<>(List.of("embedding", "head"));
    for (int i = 0; i < cfg.layers(); i++) units.add(ModelConfig.blockUnit(i));
    Map<String, Long> bytesByDirection = new HashMap<>();
    Set<String> unitsSeen = new HashSet<>();
    int transfers = 0, stalls = 0;
    for (RecordedEvent e : RecordingFile.readAllEvents(jfr)) {
      String type = e.getEventType().getName();
      if (type.equals(TRANSFER)) {
        transfers++;
        long bytes = e.getLong("bytes");
        assertTrue(bytes > 0, "a transfer moves bytes: " + e);
        String unit = e.getString("unit");
        assertTrue(units.contains(unit), "a unit of the model: " + unit);
        unitsSeen.add(unit);
        assertTrue(e.getString("role") != null && !e.getString("role").isEmpty(), "the role: " + e);
        bytesByDirection.merge(e.getString("direction"), bytes, Long::sum);
      } else if (type.equals(STALL)) {
        stalls++;
        String unit = e.getString("unit");
        assertTrue(units.contains(unit) || unit.isEmpty(), "a stall names a unit of the model (or none): " + e);
      }
    }
    assertTrue(transfers > 0, "Transfer events recorded");
    assertTrue(unitsSeen.contains("block.0") && unitsSeen.contains("block.1"), "the blocks' transfers: " + unitsSeen);
    assertEquals(Set.of("disk to host", "host to disk"), bytesByDirection.keySet());
    assertEquals(totals.diskToHost(), bytesByDirection.get("disk to host"), "bytes read: events against the trainer's totals");
    assertEquals(totals.hostToDisk(), bytesByDirection.get("host to disk"), "bytes written: events against the trainer's totals");
    // every wait that was counted was also recorded (a wait may be too short to count, never the other way round)
    if (totals.stallNanos() > 0) assertTrue(stalls > 0, "stalled " + totals.stallNanos() + " ns, but no Stall event");
  }
}
