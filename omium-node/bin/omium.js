#!/usr/bin/env node
// `omium`, the command line of Omium (`npx omium ...`): the same Rust CLI as the Python
// package's and `cargo install`'s, carried by this package's native addon.
"use strict";
const native = require("../native/index.js");

if (typeof native.cliMain !== "function") {
  process.stderr.write(
    "omium: this build of the omium native addon has no command line (it was built without the cluster); " +
      "build it with its default features (npm run build)\n",
  );
  process.exit(1);
}
native.cliMain(["omium", ...process.argv.slice(2)]);
