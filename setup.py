"""Install vtpack_mm: Dynamic Grained Encoder backbones for the OpenMMLab stack."""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_requirements(name):
    """Requirement lines of requirements/<name>.txt, comments dropped."""
    with open(os.path.join(HERE, 'requirements', name + '.txt')) as f:
        lines = (line.split('#', 1)[0].strip() for line in f)
        return [line for line in lines if line]


def read_version():
    with open(os.path.join(HERE, 'vtpack_mm', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


setup(
    name='vtpack_mm',
    version=read_version(),
    description='Dynamic Grained Encoder (NeurIPS 2021) backbones for mmdet, '
    'mmsegmentation and mmpretrain',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    install_requires=read_requirements('runtime') + read_requirements('mminstall'),
    extras_require=dict(
        tests=read_requirements('tests'),
        optional=read_requirements('optional'),
    ),
    zip_safe=False,
)
