// SPDX-License-Identifier: MIT
// Run a MicroPython snippet on the WebAssembly port (32-bit), with a folder of .mpy files
// importable: the 32-bit figures of `make measure` (tools/measure.py installs the port).
//
//   node tools/wasm_import.mjs PORT_MJS LIBDIR SNIPPET.py [HEAPSIZE]
//
// PORT_MJS: micropython.mjs of npm @micropython/micropython-webassembly-pyscript.
// LIBDIR: every *.mpy in it is copied into the port's in-memory file system at /mpy, which
// becomes the first entry of sys.path (".frozen" stays for the port's own modules).
// HEAPSIZE: the MicroPython GC heap in bytes (default 1 MB, the port's own default).
// The snippet's output goes to stdout; an uncaught Python exception exits 1.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [portMjs, libdir, snippet, heap] = process.argv.slice(2);
if (!portMjs || !libdir || !snippet) {
  console.error("usage: node wasm_import.mjs PORT_MJS LIBDIR SNIPPET.py [HEAPSIZE]");
  process.exit(2);
}

const { loadMicroPython } = await import(pathToFileURL(path.resolve(portMjs)).href);
const mp = await loadMicroPython({
  heapsize: heap ? parseInt(heap, 10) : 1 << 20,
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

mp.FS.mkdir("/mpy");
for (const name of fs.readdirSync(libdir)) {
  if (name.endsWith(".mpy")) {
    mp.FS.writeFile("/mpy/" + name, fs.readFileSync(path.join(libdir, name)));
  }
}
// Set the path in a run of its own: the snippet's first collection then finds this
// code's garbage already collectable, as on the unix port where MICROPYPATH does it.
mp.runPython('import sys\nsys.path[:] = ["/mpy", ".frozen"]\n');

try {
  mp.runPython(fs.readFileSync(snippet, "utf8"));
} catch (error) {
  if (error.name !== "PythonError") throw error;
  process.stderr.write(error.message + "\n");
  process.exit(1);
}
