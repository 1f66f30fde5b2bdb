/* placeholder */
#ifndef VIRT_STATE_H
#define VIRT_STATE_H
#endif
