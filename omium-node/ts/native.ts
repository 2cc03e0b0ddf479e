/** The native layer (napi-rs, built from omium-node/src). Internal: use the package's API. */
import * as native from "../native/index.js";

export = native;
