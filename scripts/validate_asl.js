#!/usr/bin/env node
// Validate Amazon States Language files with asl-validator, the way Step Functions will see them.
//
// Our ASL files hold `${Name}` DefinitionSubstitutions placeholders (template.yaml fills them in at deploy time),
// which the validator would reject as ARNs or numbers. Like CloudFormation, this replaces every placeholder in the
// raw text, here with a dummy value of the right kind chosen by the name's suffix, then validates the result.
//
// Usage: node scripts/validate_asl.js statemachine/*.asl.json
"use strict";

const fs = require("fs");
const validate = require("asl-validator");

const ACCOUNT = "123456789012";
const REGION = "us-east-1";

// Dummy value by placeholder name; the first rule whose pattern matches wins. A placeholder no rule knows fails the
// check, so a new kind of substitution gets a rule here instead of slipping through unvalidated.
const RULES = [
  [/FunctionArn$/, (name) => `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${name.replace(/Arn$/, "")}`],
  [/TopicArn$/, (name) => `arn:aws:sns:${REGION}:${ACCOUNT}:${name.replace(/Arn$/, "")}`],
  [/QueueUrl$/, (name) => `https://sqs.${REGION}.amazonaws.com/${ACCOUNT}/${name.replace(/Url$/, "")}`],
  [/StateMachineArn$/, (name) => `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${name.replace(/Arn$/, "")}`],
  [/RoleArn$/, (name) => `arn:aws:iam::${ACCOUNT}:role/${name.replace(/Arn$/, "")}`],
  [/(Name|Bucket)$/, (name) => `dummy-${name.toLowerCase()}`],
  [/(MaxConcurrency|Seconds|Count|Rounds|Size)$/, () => "10"],
];

function substitute(text) {
  const unknown = new Set();
  const out = text.replace(/\$\{([A-Za-z0-9_:.]+)\}/g, (placeholder, name) => {
    const rule = RULES.find(([pattern]) => pattern.test(name));
    if (!rule) {
      unknown.add(name);
      return placeholder;
    }
    return rule[1](name);
  });
  return { out, unknown: [...unknown] };
}

function check(path) {
  let text;
  try {
    text = fs.readFileSync(path, "utf8");
  } catch (err) {
    console.error(`✕ ${path}: ${err.message}`);
    return false;
  }
  const { out, unknown } = substitute(text);
  if (unknown.length > 0) {
    console.error(`✕ ${path}: no dummy value for \${${unknown.join("}, ${")}}; add a rule in scripts/validate_asl.js`);
    return false;
  }
  let definition;
  try {
    definition = JSON.parse(out);
  } catch (err) {
    console.error(`✕ ${path}: not valid JSON once the substitutions are made: ${err.message}`);
    return false;
  }
  const result = validate(definition, { checkArn: true, checkPaths: true });
  if (!result.isValid) {
    console.error(`✕ ${path} is invalid:\n${result.errorsText("\n")}`);
    return false;
  }
  console.log(`✓ ${path} is valid`);
  return true;
}

function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node scripts/validate_asl.js FILE.asl.json [...]: no state machine definition given");
    return 2;
  }
  // Check every file even after a failure, so one run reports them all.
  const results = paths.map(check);
  return results.every(Boolean) ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
