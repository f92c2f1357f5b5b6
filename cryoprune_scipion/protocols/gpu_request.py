"""What a protocol asks a cluster queue for."""


class GpuRequest:
    """Mixed into protocols with a Use GPU switch, before their pyworkflow
    base: with Use GPU off they ask for no GPU, so that a queue's submission
    script (hosts.conf, GPU_COUNT) requests none for jobs that run on the
    CPU. pyworkflow counts the GPU IDs field whatever the switch."""

    def getGpuList(self):
        return super().getGpuList() if self.usesGpu() else []
