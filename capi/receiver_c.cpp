// Placeholder until the C shim lands.
