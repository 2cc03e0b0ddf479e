// LangGraph.js's own checkpointer conformance suite (@langchain/langgraph-checkpoint-validation)
// against OmiumSaver, run by vitest (the suite is written for a Jest-like runner). The package's
// CLI cannot load an initializer in version 1.1.1 (its schema export is missing from the
// build), so the suite's `validate()` is called here, as its README describes.
import { validate } from "@langchain/langgraph-checkpoint-validation";

import initializer from "./initializer.mjs";

validate(initializer);
