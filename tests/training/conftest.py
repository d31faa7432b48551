import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy shared CPU they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
