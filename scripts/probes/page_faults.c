/* Cost of first-touching fresh anonymous memory, in 4 KiB pages, with
 * MADV_HUGEPAGE, or populated in bulk (BENCHMARKS.md, session 14).
 *   cc -O2 page_faults.c -o page_faults && ./page_faults MB MODE
 * MODE: 0 = 4 KiB faults, 1 = MADV_HUGEPAGE, 2 = MADV_POPULATE_WRITE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  size_t sz=(size_t)atoi(argv[1])<<20; int huge=atoi(argv[2]);
  char*p=mmap(0,sz+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  p=(char*)(((unsigned long)p+(2<<20)-1)&~((2UL<<20)-1));
  if(huge==1) madvise(p,sz,MADV_HUGEPAGE);
  if(huge==2) madvise(p,sz,MADV_POPULATE_WRITE);
  double t0=now();
  for(size_t i=0;i<sz;i+=4096)p[i]=1;
  double t1=now();
  struct rusage ru;getrusage(RUSAGE_SELF,&ru);
  printf("huge=%d %zu MB touch %.3f s user %.3f sys %.3f minflt %ld\n",huge,sz>>20,t1-t0,ru.ru_utime.tv_sec+ru.ru_utime.tv_usec*1e-6,ru.ru_stime.tv_sec+ru.ru_stime.tv_usec*1e-6,ru.ru_minflt);
  return 0;}
