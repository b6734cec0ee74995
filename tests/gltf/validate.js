// Run the Khronos glTF-Validator on each file named on the command line and print one
// JSON line per file: {"file", "errors", "warnings", "infos", "hints", "messages"}.
// Where the npm package lives is the caller's business: NODE_PATH or the IMESH_GLTF_VALIDATOR
// folder (a `npm install --prefix DIR` target) is searched, so no node_modules sits in tests/.
'use strict';
const fs = require('fs');
const path = require('path');

function loadValidator() {
  const prefix = process.env.IMESH_GLTF_VALIDATOR;
  if (prefix) {
    return require(path.resolve(prefix, 'node_modules', 'gltf-validator'));
  }
  return require('gltf-validator');
}

async function main() {
  const validator = loadValidator();
  for (const file of process.argv.slice(2)) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
      uri: path.basename(file),
      maxIssues: 0, // 0 = no limit: every issue is reported
    });
    const issues = report.issues;
    console.log(JSON.stringify({
      file,
      validatorVersion: report.validatorVersion,
      errors: issues.numErrors,
      warnings: issues.numWarnings,
      infos: issues.numInfos,
      hints: issues.numHints,
      messages: issues.messages,
    }));
  }
}

main().catch((err) => {
  console.error(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
