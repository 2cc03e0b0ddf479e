// The CheckpointerTestInitializer for @langchain/langgraph-checkpoint-validation: each
// checkpointer gets a fresh store directory of its own.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { OmiumSaver } from "omium/langgraph";

const dirs = new Map();

export default {
  checkpointerName: "omium",
  async createCheckpointer() {
    const dir = mkdtempSync(join(tmpdir(), "omium-lg-"));
    const saver = await OmiumSaver.open(dir, { durability: "buffered" });
    dirs.set(saver, dir);
    return saver;
  },
  async destroyCheckpointer(saver) {
    saver.close();
    rmSync(dirs.get(saver), { recursive: true, force: true });
    dirs.delete(saver);
  },
};
