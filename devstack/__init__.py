"""Development tooling (never in the production image): embedded Postgres and broker, the local
gateway, the supervisor behind `attune dev`, and the Canvas/Moodle emulator."""
