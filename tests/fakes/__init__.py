"""Local fakes of remote services (Gmail, Graph) that the real client libraries talk to."""
