// validate.js: validates an OpenAPI document with @apidevtools/swagger-parser (a validator we did not
// write): the document against the OpenAPI 3.1 schema, and every $ref resolved.
// Usage: node validate.js FILE   -> prints "valid: TITLE VERSION, N paths" and exits 0, or the error and 1.
"use strict";
const SwaggerParser = require("@apidevtools/swagger-parser");

async function main() {
    const file = process.argv[2];
    if (!file) {
        console.error("usage: node validate.js FILE");
        process.exit(2);
    }
    try {
        const api = await SwaggerParser.validate(file);
        console.log(`valid: ${api.info.title} ${api.info.version}, ${Object.keys(api.paths).length} paths`);
    } catch (e) {
        console.error("invalid: " + e.message);
        process.exit(1);
    }
}
main();
