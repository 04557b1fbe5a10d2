"""asyncio I/O around the pure FSM and RIB: sockets, timers, admin API."""
