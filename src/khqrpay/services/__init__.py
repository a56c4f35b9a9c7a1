"""Services: the use cases. Each runs in a unit of work its caller opens (`Database.write()`),
calls the repositories and the pure core, and never talks to Bakong inside a transaction."""
