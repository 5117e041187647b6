// Runs graphql-http's GraphQL-over-HTTP server audit against the URL given as the only argument
// and prints one JSON array of {id, name, status, reason} (status: ok, warn or error).
// graphql-http is found through NODE_PATH (tests/support/node_tools.py sets it).
const { auditServer } = require("graphql-http");

auditServer({ url: process.argv[2] }).then(
  (results) => {
    const summary = results.map(({ id, name, status, reason }) => ({ id, name, status, reason }));
    process.stdout.write(JSON.stringify(summary));
  },
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
