"""Scale: throughput, memory, time to quality and genome-wide sizes."""
